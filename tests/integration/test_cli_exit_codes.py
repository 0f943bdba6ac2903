"""The ``boundaries`` console script's expected failures (issue 14, "Errors"): one line on stderr naming the
setting to fix, an exit status by kind (65 data, 69 a service down, 78 a setting, 130 Ctrl-C, 141 a closed
pipe), no traceback unless ``--debug``. Each case runs the real command as a subprocess against the real
trigger: a closed port, a missing bucket on moto, a real pipe closed by ``head``, a real SIGINT."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from pydantic import SecretStr

from boundaries_cli.embedded import child_env
from config.settings import Settings
from tests.conftest import REPO
from tests.integration.test_dlq_operations import dead_letter, ops  # noqa: F401 - ops is a fixture
from tests.operator_process import ctrl_c, operator_process
from tests.services import free_port

BOUNDARIES = [sys.executable, "-m", "boundaries_cli.main"]
"""The ``boundaries`` console script, run from the checkout."""
POPEYE = "derived/popeye_burn10/T00-1_p3_srtburn_10fps.mp4"


def _env(**settings: str) -> dict[str, str]:
    """The test process's environment without any BOUNDARIES_* variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOUNDARIES_")}
    return env | {f"BOUNDARIES_{k.upper()}": v for k, v in settings.items()}


def _run(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*BOUNDARIES, *argv], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    """stderr's only line (AssertionError when there are more, or a traceback)."""
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def _closed_pg(schema: str = "public") -> dict[str, str]:
    return {"database_url": f"postgresql://postgres:pw-not-shown@127.0.0.1:{free_port()}/postgres",
            "db_schema": schema}


def test_worker_without_a_redis_url_names_the_setting(pg_dsn):
    # given: a database but no BOUNDARIES_REDIS_URL (only `boundaries run` starts an embedded Redis)
    proc = _run(["worker"], _env(database_url=pg_dsn))

    # then: EX_CONFIG, one line naming the setting, and no claim that an embedded Redis starts
    line = _one_line(proc)
    assert proc.returncode == 78, proc.stderr
    assert line.startswith("boundaries worker: error:") and "BOUNDARIES_REDIS_URL is not set" in line, line


def test_migrate_with_the_database_down_is_one_line_exit_69():
    proc = _run(["migrate"], _env(**_closed_pg()))
    line = _one_line(proc)
    assert proc.returncode == 69, proc.stderr
    assert "BOUNDARIES_DATABASE_URL" in line and "127.0.0.1" in line
    assert "pw-not-shown" not in proc.stderr


@pytest.mark.parametrize("argv", [["jobs", "list"], ["jobs", "show", str(uuid.uuid4())], ["runs", "list"],
                                  ["dlq", "list"], ["dlq", "replay", "--all"]], ids=lambda a: " ".join(a[:2]))
def test_an_operator_command_with_the_database_down_fails_at_once_in_one_line(argv, redis_url):
    # given: nothing listens on the registry's port (the database is down); the broker is up
    env = _env(**_closed_pg(), redis_url=redis_url)

    # when: an operator lists jobs, runs or dead letters
    started = time.monotonic()
    proc = _run(argv, env)
    elapsed = time.monotonic() - started

    # then: one line with libpq's reason and the setting, exit 69, without waiting out the pool's 10 s
    # timeout while its reconnect warnings scroll by (what an operator saw before)
    line = _one_line(proc)
    assert proc.returncode == 69, proc.stderr
    assert "BOUNDARIES_DATABASE_URL" in line and "Connection refused" in line, line
    assert "pw-not-shown" not in proc.stderr
    assert elapsed < 8, f"took {elapsed:.1f} s"


def test_debug_flag_adds_the_traceback():
    env = _env(**_closed_pg())
    proc = _run(["--debug", "migrate"], env)
    assert proc.returncode == 69
    assert "Traceback" in proc.stderr and "BOUNDARIES_DATABASE_URL" in proc.stderr.strip().splitlines()[-1]
    proc = _run(["migrate"], env | {"BOUNDARIES_DEBUG": "1"})
    assert proc.returncode == 69 and "Traceback" in proc.stderr


def test_producer_timing_refusal_is_one_line_naming_both_settings():
    # given: a webhook deadline longer than the 'pending' marker's TTL (the timing check refuses it)
    proc = _run(["serve"], _env(producer_deadline_s="100", dedupe_pending_ttl_s="60"))
    line = _one_line(proc)
    assert proc.returncode == 78, proc.stderr
    assert "BOUNDARIES_PRODUCER_DEADLINE_S=100" in line and "BOUNDARIES_DEDUPE_PENDING_TTL_S=60" in line, line


def test_worker_timing_refusal_is_one_line_naming_both_settings(redis_url, pg_dsn):
    # given: a heartbeat staleness above the visibility timeout (a dead worker's job would be lost)
    proc = _run(["worker"], _env(redis_url=redis_url, database_url=pg_dsn, heartbeat_stale_s="99999"))
    line = _one_line(proc)
    assert proc.returncode == 78, proc.stderr
    assert "BOUNDARIES_HEARTBEAT_STALE_S=99999" in line and "BOUNDARIES_VISIBILITY_TIMEOUT_S" in line, line


def test_a_log_level_that_is_not_one_names_the_variable_and_value():
    # given: a typo in the log level an operator exported
    proc = _run(["jobs", "list"], _env(log_level="verbose", **_closed_pg()))

    # then: one line naming the variable, the value and the levels there are; a setting error (78)
    line = _one_line(proc)
    assert proc.returncode == 78, proc.stderr
    assert "BOUNDARIES_LOG_LEVEL='VERBOSE' is not a log level" in line and "DEBUG, INFO" in line, line


def test_a_setting_of_the_wrong_type_names_the_variable_and_value():
    proc = _run(["migrate"], _env(shard_pairs="many"))
    line = _one_line(proc)
    assert proc.returncode == 78, proc.stderr
    assert "BOUNDARIES_SHARD_PAIRS='many'" in line, line


def test_a_list_setting_that_is_not_json_names_the_variable():
    proc = _run(["migrate"], _env(webhook_tables="cropped_frames_versions"))
    line = _one_line(proc)
    assert proc.returncode == 78, proc.stderr
    assert "BOUNDARIES_WEBHOOK_TABLES" in line, line


def test_dlq_list_into_head_is_quiet_when_the_pipe_closes(ops):  # noqa: F811 - the fixture
    # given: enough dead letters that `dlq list` writes far more than a pipe holds (64 KiB)
    settings, reg, dl, _ = ops
    for _ in range(250):
        dead_letter(reg, dl)

    # when: its stdout goes into `head -1`, which exits after the first line
    lister = subprocess.Popen([*BOUNDARIES, "dlq", "list", "--limit", "1000"], env=child_env(settings), cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-1"], stdin=lister.stdout, stdout=subprocess.PIPE)
    lister.stdout.close()  # head holds the only read end
    first, _ = head.communicate(timeout=60)
    err = lister.stderr.read().decode()
    lister.wait(60)

    # then: head got the first line; the lister exits 141 (or 0) without a word on stderr
    assert first == b"[\n"
    assert lister.returncode in (0, 141), (lister.returncode, err)
    assert err == "", err


@pytest.mark.parametrize("command", ["sweep", "reconcile"])
def test_ctrl_c_stops_a_loop_with_130_and_at_most_one_line(command, redis_url, pg_dsn, db_schema):
    # given: a migrated registry and a running `boundaries <command> --loop` that has finished a pass
    from boundaries.registry.db import Database

    db = Database(pg_dsn, db_schema)
    db.migrate()
    db.close()
    q = uuid.uuid4().hex[:10]
    env = _env(redis_url=redis_url, database_url=pg_dsn, db_schema=db_schema, queue_high=f"t{q}.high",
               queue_low=f"t{q}.low")
    with operator_process([*BOUNDARIES, command, "--loop"], env=env, cwd=REPO) as proc:
        first = proc.stdout.readline()  # the first pass's JSON line
        assert first.startswith("{"), (first, proc.stderr.read() if proc.poll() is not None else "")

        # when: Ctrl-C
        _, err = ctrl_c(proc)

    # then
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err


def test_ctrl_c_outside_a_loop_is_one_line_exit_130(tmp_path):
    # given: a command with no SIGINT handler of its own, blocked on a service:
    # `boundaries migrate` waiting on a database port that accepts and never answers
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    env = _env(redis_url=f"redis://127.0.0.1:{free_port()}/0",
               database_url=f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/postgres")
    with silent, operator_process([*BOUNDARIES, "migrate"], env=env, cwd=REPO) as proc:
        silent.settimeout(60)
        conn, _ = silent.accept()  # the command is connecting (libpq waits up to 10 s for an answer)
        time.sleep(0.5)  # past the TCP handshake: the command waits for the server's answer in Python
        assert proc.poll() is None, proc.communicate()

        # when
        _, err = ctrl_c(proc)

    # then
    conn.close()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines() == ["boundaries migrate: interrupted"], err


def test_ingest_into_a_missing_bucket_names_the_setting(real_data, moto_s3, pg_dsn, db_schema):
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    env = _env(database_url=pg_dsn, db_schema=db_schema, storage_backend="s3", s3_bucket=missing,
               s3_endpoint_url=moto_s3.endpoint_url, s3_access_key_id="testing", s3_secret_access_key="testing")  # noqa: S106 - moto
    proc = _run(["ingest", str(real_data / POPEYE), "--crop", "0.05,0.78,0.95,0.99"], env, timeout=300)
    line = _one_line(proc)
    assert proc.returncode == 78, proc.stderr
    assert line.startswith("boundaries ingest: error:") and "BOUNDARIES_S3_BUCKET" in line and missing in line, line


@pytest.mark.parametrize("fault,status,setting", [("missing bucket", 78, "BOUNDARIES_S3_BUCKET"),
                                                  ("closed endpoint", 69, "BOUNDARIES_S3_ENDPOINT_URL")])
def test_worker_with_a_bad_store_refuses_to_start(fault, status, setting, redis_url, pg_dsn, db_schema, moto_s3,
                                                  tmp_path):
    # given: a worker whose bucket does not exist, or whose store endpoint is a closed port (it would fail
    # every job it takes)
    bucket = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    endpoint = moto_s3.endpoint_url if fault == "missing bucket" else f"http://127.0.0.1:{free_port()}"
    q = uuid.uuid4().hex[:10]
    settings = Settings(redis_url=redis_url, database_url=SecretStr(pg_dsn), db_schema=db_schema,
                        queue_high=f"t{q}.high", queue_low=f"t{q}.low", state_dir=tmp_path, storage_backend="s3",
                        s3_bucket=bucket, s3_endpoint_url=endpoint,
                        s3_access_key_id=SecretStr("testing"), s3_secret_access_key=SecretStr("testing"))

    # when
    proc = _run(["worker"], child_env(settings), timeout=90)

    # then: it exits at start, its last line naming the setting to fix
    assert proc.returncode == status, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("boundaries worker: error: object store:"), last
    assert setting in last and (bucket in last or endpoint in last), last
