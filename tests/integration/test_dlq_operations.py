"""``boundaries dlq`` for an operator after an outage, on real Redis and PostgreSQL (issue 17): ``list``
says when ``--limit`` cut it and filters by a time window; ``purge`` refuses to delete everything
unasked; ``replay`` by filter, dry run, rate, queue choice, summary and exit code; the replay bookkeeping
changes only when a message was sent."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis as redis_lib
from pydantic import SecretStr

from boundaries.errors import LayoutError
from boundaries.events import JobEvent
from boundaries.registry.db import Database
from boundaries.registry.dead_letters import DeadLetters
from boundaries.registry.registry import Registry
from boundaries_cli.embedded import child_env
from config.settings import Settings
from tests.conftest import REPO
from tests.integration.harness import wait_until
from tests.operator_process import ctrl_c, operator_process

MV = "dlq-test"


@pytest.fixture
def ops(redis_url, pg_dsn, db_schema, tmp_path):
    """Settings on the test services (unique queues and schema), the registry, dead letters and Redis."""
    q = uuid.uuid4().hex[:10]
    settings = Settings(redis_url=redis_url, database_url=SecretStr(pg_dsn), db_schema=db_schema,
                        state_dir=tmp_path / "state", queue_high=f"t{q}.high", queue_low=f"t{q}.low")
    db = Database(pg_dsn, db_schema)
    db.migrate()
    r = redis_lib.Redis.from_url(redis_url)
    yield settings, Registry(db), DeadLetters(db), r
    r.delete(settings.queue_high, settings.queue_low)
    r.close()
    db.close()


def dead_letter(reg: Registry, dl: DeadLetters, *, error=LayoutError, tenant: str | None = None,
                age_h: float = 0.0) -> tuple[str, JobEvent]:
    """A job that ran once and failed permanently, through the worker's own transitions (recorded,
    attempt started, dead-lettered); ``age_h``: the dead letter's age in hours. Returns (id, event)."""
    event = JobEvent(video_id=str(uuid.uuid4()), tenant_id=tenant or str(uuid.uuid4()), cropped_frames_version=1,
                     model_version=MV, source="webhook")
    job_id, _ = reg.jobs.record(event)
    attempt = reg.jobs.claim(job_id)
    exc = error("layout.db unreadable")
    dl_id = reg.jobs.dead_letter(job_id, attempt, event.model_dump(mode="json") | {"job_id": job_id},
                                 error_type=getattr(exc, "error_type", type(exc).__name__),
                                 error_message=f"{type(exc).__name__}: {exc}")
    if age_h:
        with reg.db.connection() as c:
            c.execute("UPDATE boundary_inference_dead_letters SET created_at = now() - make_interval(secs => %s)"
                      " WHERE id = %s", (age_h * 3600, dl_id))
    return dl_id, event


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "boundaries_cli.main", "dlq", *args], env=child_env(settings),
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def _bookkeeping(pg_dsn, schema, ids) -> dict[str, tuple]:
    with psycopg.connect(pg_dsn) as c:
        rows = c.execute(f"SELECT id, replay_count, replayed_at FROM {schema}.boundary_inference_dead_letters"
                         " WHERE id = ANY(%s::uuid[])", (list(ids),)).fetchall()
    return {str(i): (n, at) for i, n, at in rows}


def test_list_says_when_limit_cut_it_and_filters_a_time_window(ops):
    settings, reg, dl, _ = ops
    ages = [30, 20, 5, 1, 0.1]  # hours
    ids = [dead_letter(reg, dl, age_h=a)[0] for a in ages]

    cut = cli(settings, "list", "--limit", "3")
    whole = cli(settings, "list", "--limit", "5")
    recent = cli(settings, "list", "--since", "6h")
    window = cli(settings, "list", "--since", "25h", "--until",
                 (datetime.now(UTC) - timedelta(hours=3)).replace(tzinfo=None).isoformat())
    bad = cli(settings, "list", "--since", "yesterday")

    assert cut.returncode == 0, cut.stderr
    assert [r["id"] for r in json.loads(cut.stdout)] == ids[:3]  # oldest first
    assert "3 of 5" in cut.stderr and "--limit 3" in cut.stderr
    assert [r["id"] for r in json.loads(whole.stdout)] == ids and whole.stderr == ""
    assert [r["id"] for r in json.loads(recent.stdout)] == ids[2:]
    assert [r["id"] for r in json.loads(window.stdout)] == ids[1:3]
    assert bad.returncode == 2 and "--since" in bad.stderr and "'yesterday'" in bad.stderr


def test_purge_needs_a_selection_or_all_yes(ops, pg_dsn, db_schema):
    settings, reg, dl, _ = ops
    layout = [dead_letter(reg, dl)[0] for _ in range(2)]
    other = dead_letter(reg, dl, error=RuntimeError)[0]

    unasked = cli(settings, "purge")
    all_unconfirmed = cli(settings, "purge", "--all")
    left = len(_bookkeeping(pg_dsn, db_schema, [*layout, other]))
    by_filter = cli(settings, "purge", "--error-type", "layout_error")
    left_after_filter = set(_bookkeeping(pg_dsn, db_schema, [*layout, other]))
    everything = cli(settings, "purge", "--all", "--yes")

    assert unasked.returncode == 2 and "--all --yes" in unasked.stderr
    assert all_unconfirmed.returncode == 2 and "--yes" in all_unconfirmed.stderr
    assert left == 3  # nothing deleted by the refused commands
    assert json.loads(by_filter.stdout) == {"purged": 2} and left_after_filter == {other}
    assert json.loads(everything.stdout) == {"purged": 1}
    assert _bookkeeping(pg_dsn, db_schema, [other]) == {}


def test_dry_run_sends_nothing_and_says_what_would_be_sent(ops, pg_dsn, db_schema):
    settings, reg, dl, r = ops
    (a, _), (b, _), (c, done) = (dead_letter(reg, dl) for _ in range(3))
    job = reg.jobs.find(done.video_id, 1, MV)
    reg.jobs.complete(str(job["id"]), None, None)  # done meanwhile (e.g. replayed by another operator)

    dry = cli(settings, "replay", "--error-type", "layout_error", "--dry-run")

    assert dry.returncode == 0, dry.stderr
    out = json.loads(dry.stdout)
    assert out["summary"]["would_queue"] == 2 and out["summary"]["would_duplicate"] == 1
    by_id = {x["dead_letter_id"]: x for x in out["results"]}
    assert by_id[a]["queue"] == settings.queue_low and by_id[c]["job_status"] == "completed"
    assert r.llen(settings.queue_low) == 0 and r.llen(settings.queue_high) == 0
    assert {n for n, _ in _bookkeeping(pg_dsn, db_schema, [a, b, c]).values()} == {0}
    assert [reg.jobs.get(dl.get(x)["job_id"])["status"] for x in (a, b)] == ["failed", "failed"]


def test_replay_by_filter_goes_to_the_low_queue_and_counts_only_sends(ops, pg_dsn, db_schema):
    settings, reg, dl, r = ops
    tenant = str(uuid.uuid4())
    mine = [dead_letter(reg, dl, tenant=tenant)[0] for _ in range(4)]
    other = dead_letter(reg, dl)[0]

    first = cli(settings, "replay", "--tenant-id", tenant, "--rate", "10")
    after_first = _bookkeeping(pg_dsn, db_schema, mine)
    again = cli(settings, "replay", *mine)
    by_filter_again = cli(settings, "replay", "--tenant-id", tenant)
    high = cli(settings, "replay", other, "--priority", "high")
    missing = cli(settings, "replay", str(uuid.uuid4()))

    # first: 4 sent to the low queue at <= 10/s (3 gaps of 0.1 s), counted once each
    assert first.returncode == 0, first.stderr
    s = json.loads(first.stdout)["summary"]
    assert (s["queued"], s["duplicate"], s["failed"]) == (4, 0, 0)
    assert s["seconds"] >= 0.28
    assert "4 queued" in first.stderr
    assert r.llen(settings.queue_low) == 4
    assert {n for n, _ in after_first.values()} == {1}
    # a second replay of the same ids sends nothing and leaves the bookkeeping alone; exit 0 (already done)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["summary"]["duplicate"] == 4
    assert _bookkeeping(pg_dsn, db_schema, mine) == after_first
    assert r.llen(settings.queue_low) == 4
    # by filter, replayed ones are skipped unless --include-replayed
    assert json.loads(by_filter_again.stdout)["summary"]["total"] == 0
    # --priority high: the high queue
    assert json.loads(high.stdout)["summary"]["queued"] == 1 and r.llen(settings.queue_high) == 1
    # an unknown id: reported, exit 1
    assert missing.returncode == 1 and json.loads(missing.stdout)["summary"]["not_found"] == 1


def test_replay_without_ids_or_filter_is_refused(ops):
    settings, reg, dl, r = ops
    dead_letter(reg, dl)

    res = cli(settings, "replay")

    assert res.returncode == 2 and "--all" in res.stderr
    assert r.llen(settings.queue_low) == 0


def test_replay_stops_when_the_broker_is_unreachable_and_leaves_every_dead_letter_replayable(ops, pg_dsn,
                                                                                          db_schema):
    # given: three dead letters, and a broker URL where nothing listens (Redis down during the replay)
    import socket

    settings, reg, dl, _ = ops
    ids = [dead_letter(reg, dl)[0] for _ in range(3)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    fields = ("status", "error_message", "completed_at", "source", "priority", "sent_at", "attempts")
    before = [{k: reg.jobs.get(dl.get(x)["job_id"])[k] for k in fields} for x in ids]

    # when
    res = cli(down, "replay", *ids, "--rate", "0")

    # then: the first failed, the rest were not tried; exit 69 (a service down) with one line naming the
    # setting; every job row exactly as before (its error kept), nothing counted as replayed
    assert res.returncode == 69, res.stderr
    assert "error:" in res.stderr and "BOUNDARIES_REDIS_URL" in res.stderr
    out = json.loads(res.stdout)
    assert [x["status"] for x in out["results"]] == ["failed", "skipped", "skipped"]
    assert "broker unreachable" in out["results"][0]["error"]
    assert [{k: reg.jobs.get(dl.get(x)["job_id"])[k] for k in fields} for x in ids] == before
    assert before[0]["error_message"]
    assert {n for n, _ in _bookkeeping(pg_dsn, db_schema, ids).values()} == {0}
    # and the same command works once the broker is back
    again = cli(settings, "replay", *ids, "--rate", "0")
    assert again.returncode == 0 and json.loads(again.stdout)["summary"]["queued"] == 3


def test_ctrl_c_during_a_replay_prints_what_was_sent_and_exits_130(ops, pg_dsn, db_schema):
    # given: 12 dead letters and a replay at 4 per second (3 s in all)
    settings, reg, dl, r = ops
    ids = [dead_letter(reg, dl)[0] for _ in range(12)]
    argv = [sys.executable, "-m", "boundaries_cli.main", "dlq", "replay", "--all", "--rate", "4"]
    with operator_process(argv, env=child_env(settings), cwd=REPO) as proc:
        wait_until(lambda: r.llen(settings.queue_low) >= 2 or proc.poll() is not None, 60, "2 replays sent",
                   poll_s=0.05)
        assert proc.poll() is None, proc.communicate()

        # when: the operator presses Ctrl-C part-way through
        out, err = ctrl_c(proc)

    # then: exit 130; the summary of what was done so far on stdout and on stderr, no traceback
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    summary = json.loads(out)["summary"]
    sent = r.llen(settings.queue_low)
    assert 2 <= sent < len(ids)
    assert summary["queued"] == sent and summary["total"] == len(ids), summary
    assert summary["skipped"] == len(ids) - sent, summary
    assert f"{sent} queued" in err and "interrupted" in err and "run the same command again" in err, err
    # ... and the bookkeeping matches: exactly the sent dead letters are marked replayed
    marked = [i for i, (n, _) in _bookkeeping(pg_dsn, db_schema, ids).items() if n == 1]
    assert len(marked) == sent

    # and: the same command again sends the rest, once each
    rest = cli(settings, "replay", "--all")
    assert rest.returncode == 0, rest.stderr
    assert json.loads(rest.stdout)["summary"]["queued"] == len(ids) - sent
    assert r.llen(settings.queue_low) == len(ids)
