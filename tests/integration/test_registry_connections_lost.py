"""PostgreSQL closes pooled connections (restart, failover, idle timeout of a pooler,
pg_terminate_backend): the registry's callers get a fresh connection while the server is up, and
see only our error tree when it is not (issue 12, fault 3).

Every test runs on a PostgreSQL server of its own (tests/private_postgres.py): restarting the shared
one or terminating its backends would break every other session.
"""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack

import psycopg
import psycopg.rows
import pytest

from boundaries.errors import RegistryError, RegistryUnavailable, TransientError
from boundaries.model_versions import CLASSICAL_MODEL_VERSION as MV
from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from tests.conftest import REPO
from tests.integration.faults import FAST_TIMING, set_faults, synthetic_video
from tests.integration.harness import e2e_settings, open_stack


@pytest.fixture
def private_stack(private_pg, redis_url, tmp_path):
    """Producer (uvicorn thread) + registry on the private server, local object store."""
    with ExitStack() as es:
        def make(**overrides):
            settings = e2e_settings(redis_url=redis_url, pg_dsn=private_pg.dsn, db_schema="registry",
                                    tmp_path=tmp_path, **(FAST_TIMING | overrides))
            return open_stack(settings, es)
        yield make


def _payloads(s, n: int) -> list[tuple[str, dict]]:
    """``n`` (video_id, webhook body) of videos registered active, made before any fault."""
    out = []
    for _ in range(n):
        tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
        res = synthetic_video(s.store, s.settings, tenant, vid, frames=20)
        s.registry.upsert_video(vid, tenant, 1)
        out.append((vid, s.activate(tenant, vid, res)))
    return out


def _backend_pids(dsn: str) -> set[int]:
    with psycopg.connect(dsn, autocommit=True) as c:
        return {r[0] for r in c.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
                                        " AND pid <> pg_backend_pid()")}


def test_first_webhook_after_a_postgres_restart_is_accepted(private_stack, private_pg):
    # given: a warmed-up producer whose pooled connections all exist on the server
    s = private_stack()
    (_, first), (vid, second) = _payloads(s, 2)
    assert s.post(first).status_code == 202
    before = _backend_pids(private_pg.dsn)
    assert len(before) >= s.settings.producer_connections

    # when: PostgreSQL restarts (pg_ctl restart -m fast: every session gets AdminShutdown) and is up again
    private_pg.restart()
    assert not before & _backend_pids(private_pg.dsn)

    # then: the very first webhook is accepted and its job recorded
    r = s.post(second)
    assert r.status_code == 202, r.text
    assert s.registry.jobs.find(vid, 1, MV)["status"] == "queued"


def test_first_webhook_after_its_backends_are_terminated_is_accepted(private_stack, private_pg):
    # given
    s = private_stack()
    payloads = _payloads(s, 3)
    assert s.post(payloads[0][1]).status_code == 202

    # when: every backend of the server is terminated (a pooler's idle timeout, an operator, a failover)
    assert private_pg.terminate_backends() >= s.settings.producer_connections

    # then: the next webhooks are all accepted, the first included
    for vid, body in payloads[1:]:
        r = s.post(body)
        assert r.status_code == 202, r.text
        assert s.registry.jobs.find(vid, 1, MV) is not None


def _post_until_accepted(s, body: dict, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while (r := s.post(body)).status_code != 202:
        assert r.status_code == 503 and time.monotonic() < deadline, r.text
        time.sleep(0.2)


def _wait_job(dsn: str, vid: str, timeout_s: float) -> dict:
    """The job row once finished, read on a new connection each time (the test's own pool is not under test)."""
    deadline = time.monotonic() + timeout_s
    job = None
    while time.monotonic() < deadline:
        with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as c:
            job = c.execute("SELECT * FROM registry.boundary_inference_jobs WHERE video_id = %s", (vid,)).fetchone()
        if job and job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job of video {vid} not finished within {timeout_s} s: {job}")


def test_worker_runs_the_next_job_after_its_connections_are_closed(private_stack, private_pg, monkeypatch,
                                                                   redis_url):
    # given: a real worker process that has run one job (its pool holds open connections)
    set_faults(monkeypatch, redis_url, f"faults:{uuid.uuid4().hex}", REPO)
    s = private_stack(runner_factory="tests.integration.faults:flaky")
    jobs = _payloads(s, 3)
    s.start_worker()
    s.post(jobs[0][1])
    assert s.wait_job(jobs[0][0], MV, timeout_s=60)["status"] == "completed"

    for (vid, body), fault in zip(jobs[1:], (private_pg.terminate_backends, private_pg.restart), strict=True):
        # when: the worker's backends are terminated / the server restarts between two jobs
        fault()
        _post_until_accepted(s, body)  # the producer's side is pinned by the tests above

        # then: the next job runs on fresh connections: completed in one attempt, not left queued
        job = _wait_job(private_pg.dsn, vid, timeout_s=30)
        assert job["status"] == "completed", job["error_message"]
        assert job["attempts"] == 1


def test_registry_errors_leave_the_seam_as_our_errors(private_pg):
    # given: a registry on the private server, then the server goes away
    db = Database(private_pg.dsn, "registry", timeout_s=1.0)
    db.migrate()
    reg = Registry(db)
    assert reg.get_version(str(uuid.uuid4()), 1) is None
    with pytest.raises(RegistryError) as bad_sql:  # a statement error is ours too, not psycopg's
        with db.connection() as c:
            c.execute("SELECT no_such_column FROM boundary_inference_jobs")
    assert not isinstance(bad_sql.value, TransientError)
    assert isinstance(bad_sql.value.__cause__, psycopg.errors.UndefinedColumn)

    # when: the server is stopped
    private_pg._pg_ctl("stop", "-m", "fast")
    t0 = time.monotonic()

    # then: a registry call raises RegistryUnavailable (transient) within the pool timeout
    with pytest.raises(RegistryUnavailable) as down:
        reg.get_version(str(uuid.uuid4()), 1)
    assert isinstance(down.value, TransientError)
    assert time.monotonic() - t0 < 5
    assert "127.0.0.1" in str(down.value) and "postgres@" not in str(down.value)
    db.close()
