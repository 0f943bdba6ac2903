"""Issue 7, crashes: kill -9 of a shard process mid-shard and of the Celery worker's main process
mid-job (message redelivered after the visibility timeout to a new worker), and the stuck-job sweep.
Each ends with the job completed once: one run row, one results file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import suppress

import psycopg
import pytest

from boundaries.model_versions import CLASSICAL_MODEL_VERSION as MV
from boundaries_cli.embedded import child_env
from tests.conftest import REPO
from tests.integration.faults import counters, read_counts, set_faults, synthetic_video
from tests.integration.harness import wait_until

_wait = wait_until

SLOW = "tests.integration.faults:slow_local"


@pytest.fixture
def shard_pids(redis_url, db_schema):
    """Pids of shard processes the test's runners started; any still alive at the end are killed."""
    key = f"faults:{db_schema}:pids"
    yield lambda: [int(p) for p in counters({"counter_redis_url": redis_url}).lrange(key, 0, -1)]
    for pid in {int(p) for p in counters({"counter_redis_url": redis_url}).lrange(key, 0, -1)}:
        with suppress(ProcessLookupError, FileNotFoundError):
            if b"multiprocessing" in open(f"/proc/{pid}/cmdline", "rb").read():  # noqa: SIM115
                os.kill(pid, signal.SIGKILL)



def _new_video(s, frames=40):
    tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
    res = synthetic_video(s.store, s.settings, tenant, vid, frames=frames)
    s.registry.upsert_video(vid, tenant, 1)
    return tenant, vid, res


def _one_run_one_file(s, pg_dsn, schema, tenant, vid):
    with psycopg.connect(pg_dsn) as c:
        runs = c.execute(f"SELECT wasabi_storage_key FROM {schema}.boundary_inference_runs WHERE video_id = %s",
                         (vid,)).fetchall()
    files = list(s.store.list_keys(f"videos/{tenant}/{vid}/boundaries/"))
    assert len(runs) == 1 and files == [runs[0][0]], (runs, files)


def test_kill_9_of_a_shard_process_mid_shard(make_stack, monkeypatch, redis_url, pg_dsn, db_schema, shard_pids):
    # given: 4 shards of ~1.5 s each in one spawned shard process
    cfg = set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO, delay_s=1.5)
    s = make_stack(runner_factory=SLOW)
    tenant, vid, res = _new_video(s)
    s.start_worker()
    s.post(s.activate(tenant, vid, res))

    # when: the shard process is killed while its second shard runs
    _wait(lambda: len(shard_pids()) >= 2, 60, "second shard started")
    victim = shard_pids()[1]
    os.kill(victim, signal.SIGKILL)
    job = s.wait_job(vid, MV, timeout_s=60)

    # then: the job retried in a new pool and completed; the finished first shard was not recomputed
    assert job["status"] == "completed", job["error_message"]
    assert job["attempts"] == 2, s.registry.jobs.attempts_of(job["id"])
    calls, computed = read_counts(cfg, "calls"), read_counts(cfg, "computed")
    assert sorted(calls.values()) == [1, 1, 1, 2]  # only the killed shard ran twice
    assert set(computed.values()) == {1} and len(computed) == 4
    assert victim not in shard_pids()[2:]
    _one_run_one_file(s, pg_dsn, db_schema, tenant, vid)


def test_kill_9_of_the_worker_main_process_mid_job(make_stack, monkeypatch, redis_url, pg_dsn, db_schema,
                                                    shard_pids):
    # given: a job of 4 shards x 1.5 s (~6 s, below the 12 s visibility timeout) on worker A
    cfg = set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO, delay_s=1.5)
    s = make_stack(runner_factory=SLOW)
    tenant, vid, res = _new_video(s)
    worker_a = s.start_worker("a")
    posted_at = time.monotonic()
    s.post(s.activate(tenant, vid, res))
    _wait(lambda: len(read_counts(cfg, "computed")) >= 1, 60, "first shard computed")

    # when: worker A's main process is killed (its message stays unacked in Redis); worker B starts
    worker_a.send_signal(signal.SIGKILL)
    worker_a.wait(10)
    done_by_a = read_counts(cfg, "computed")
    s.start_worker("b")
    job = s.wait_job(vid, MV, timeout_s=90)

    # then: B got the message back after the visibility timeout, claimed the abandoned job (stale
    # heartbeat) and completed it, reusing the shards A had finished
    assert job["status"] == "completed", job["error_message"]
    assert time.monotonic() - posted_at >= s.settings.visibility_timeout_s  # redelivered, not re-sent early
    assert job["attempts"] == 2
    # A never finished: closed as abandoned when B claimed the job
    assert [a["outcome"] for a in s.registry.jobs.attempts_of(job["id"])] == ["abandoned", "completed"]
    calls = read_counts(cfg, "calls")
    assert len(calls) == 4 and done_by_a
    assert all(calls[k] == 1 for k in done_by_a)  # shards A finished were not recomputed by B
    _one_run_one_file(s, pg_dsn, db_schema, tenant, vid)


def test_sweep_requeues_abandoned_running_jobs_and_unsent_queued_jobs(make_stack, monkeypatch, redis_url, pg_dsn,
                                                                       db_schema, shard_pids):
    # given: job X recorded but never sent (producer crashed before send_task), job Y left 'running' by
    # a vanished worker (stale heartbeat), job Z running on a live worker elsewhere (fresh heartbeat)
    from boundaries.events import JobEvent
    from worker.heartbeat import Heartbeat

    set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO, delay_s=0.0)
    s = make_stack(runner_factory=SLOW)
    ids = {}
    for name in "XYZ":
        tenant, vid, res = _new_video(s, frames=20)
        s.activate(tenant, vid, res)
        ids[name] = (vid, s.registry.jobs.record(JobEvent(video_id=vid, tenant_id=tenant, cropped_frames_version=1,
                                                         model_version=MV))[0])
    s.registry.jobs.claim(ids["Y"][1])
    z_attempt = s.registry.jobs.claim(ids["Z"][1])
    # Z's worker is alive: it keeps Z's heartbeat fresh, however slowly the sweep process starts
    s.stack.enter_context(Heartbeat(s.registry.jobs, ids["Z"][1], z_attempt, s.settings.heartbeat_interval_s))
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(f"UPDATE {db_schema}.boundary_inference_jobs SET updated_at = now() - interval '1 minute'"
                  " WHERE id = %s", (ids["X"][1],))
        c.execute(f"UPDATE {db_schema}.boundary_inference_jobs SET heartbeat_at = now() - interval '1 minute'"
                  " WHERE id = %s", (ids["Y"][1],))
    s.start_worker()

    # when
    out = subprocess.run([sys.executable, "-m", "boundaries_cli.main", "sweep"], env=child_env(s.settings), cwd=REPO,
                         capture_output=True, text=True, timeout=60)

    # then: X and Y are sent and complete; Z (live) is left alone
    assert out.returncode == 0, out.stderr
    swept = json.loads(out.stdout)
    assert swept["requeued_running"] == [ids["Y"][1]] and swept["resent_queued"] == [ids["X"][1]]
    for name in "XY":
        job = s.wait_job(ids[name][0], MV, timeout_s=60)
        assert job["status"] == "completed", job["error_message"]
    assert s.registry.jobs.get(ids["Z"][1])["status"] == "running"
    attempts = s.registry.jobs.attempts_of(ids["Y"][1])
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, "abandoned"), (2, "completed")]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # the process exited while we read its stat
        return False


def test_local_runner_deadline_abandons_and_kills_running_shards(monkeypatch, redis_url, db_schema, shard_pids,
                                                                  tmp_path):
    # given: shards that would take 30 s each, a 4 s runner deadline (the solo pool enforces no time limit)
    from boundaries.shards import ShardRequest
    from tests.integration.faults import SlowLocalRunner

    set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO, delay_s=30.0)
    runner = SlowLocalRunner(1, deadline_s=4.0)
    reqs = [ShardRequest(shard_id=f"s{i}", tenant_id=str(uuid.uuid4()), video_id=str(uuid.uuid4()),
                         cropped_frames_version=1, model_version=MV, first_pair=0, end_pair=1,
                         frames_prefix="p/", layout_db_key="l.db", output_key=f"o{i}",
                         store={"backend": "local", "root": str(tmp_path)}) for i in range(2)]

    # when
    t0 = time.monotonic()
    out = runner.map(reqs)
    elapsed = time.monotonic() - t0

    # then: both shards come back as transient deadline errors at the deadline, the child is killed
    assert [(e.error_type, e.permanent) for e in out] == [("deadline_exceeded", False)] * 2
    assert 4.0 <= elapsed < 8.0
    _wait(lambda: not any(_alive(p) for p in shard_pids()), 5, "shard process killed")
    runner.close()
