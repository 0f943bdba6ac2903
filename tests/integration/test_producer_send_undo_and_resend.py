"""Sending, undoing and re-sending jobs in the producer: the fixes (request deadline with abandoned
worker threads, the short-lived 'pending' dedupe marker that falls through to the registry, ``sent_at`` +
the reconciler's ``resend_unsent``, migration 002) and their interplay, over real HTTP, Redis and PostgreSQL.

Each test of the first group reproduced a defect (each failed before its fix: a "duplicate" answer for a
job its owner then undid, a producer that did not exit on SIGTERM behind an abandoned enqueue, a failed
sweep send hiding jobs for 30 min, /readyz green on a read-only Redis); the second group holds attacks
that held up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from boundaries.events import JobEvent
from boundaries.registry.db import Database
from producer.reconciler import reconcile, resend_unsent
from tests.integration import test_producer_support as support
from tests.integration.test_producer_hung_services_and_races import _dedupe_key, _ExplodingCelery, _jobs
from tests.integration.test_producer_support import SECRET, version_payload
from tests.services import free_port

pytestmark = pytest.mark.integration
producer_factory = support.producer_factory  # the fixture

REPO = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}


def _seed_version(registry, video_id: str, tenant_id: str, version: int = 1) -> None:
    registry.upsert_video(video_id, tenant_id, version)
    registry.upsert_version(video_id=video_id, tenant_id=tenant_id, version=version, storage_prefix="p/",
                            layout_db_storage_key="l.db", total_frames=100, chunk_count=7)


def _message_job_ids(p) -> list[str]:
    """job_id of each message waiting in the producer's queues (kombu's Redis envelope, JSON body)."""
    import base64

    out = []
    for raw in p.queued():
        env = json.loads(raw)
        args = json.loads(base64.b64decode(env["body"]))
        out.append(args[1]["event"]["job_id"])
    return out


# =====================================================================================================
# Defects
# =====================================================================================================
def test_duplicate_answer_is_not_given_for_a_job_that_its_owner_then_undoes(producer_factory, video_id,
                                                                              tenant_id):
    # Given two webhooks for one activation at once (the trigger fires the videos UPDATE and the
    # cropped_frames_versions UPDATE together; pg_net sends each once and never retries): A owns the
    # 'pending' marker and has recorded job J; while A's send is in flight, B finds 'pending', falls
    # through to the registry, finds J and is answered 200 "duplicate" — then A's send fails (a broker blip)
    p = producer_factory()
    live_celery = p.enqueuer.celery
    seen: list[httpx.Response] = []

    def second_webhook_arrives_during_the_send():
        seen.append(p.post(version_payload(video_id, tenant_id)))

    p.enqueuer.celery = _ExplodingCelery(second_webhook_arrives_during_the_send)
    try:
        a = p.post(version_payload(video_id, tenant_id))
    finally:
        p.enqueuer.celery = live_celery
    (b,) = seen
    assert a.status_code == 503, a.text
    # Then: whoever is answered "duplicate, a job exists" (200: the sender will not try again) must be able
    # to rely on it — the job exists, or a message is on its way. Here A undid J (row deleted, key dropped)
    # after B's answer: B's 200 names a job that no longer exists, nothing is queued, and A's 503 is never
    # retried by pg_net; the activation waits for the reconciler (reconcile_interval_s, 5 min) at best
    # (and for ever when the registry's version row is not active yet / is written by another system).
    jobs = _jobs(p.registry, video_id)
    assert b.status_code != 200 or jobs, (
        f"B answered {b.status_code} {b.json()} but job {b.json().get('job_id')} was deleted by A's undo; "
        f"jobs now: {jobs}, messages queued: {len(p.queued())}")


def _uvicorn_env(redis_url: str, pg_dsn: str, db_schema: str, q: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOUNDARIES_")}
    env.update({
        "PYTHONPATH": str(REPO), "BOUNDARIES_REDIS_URL": redis_url, "BOUNDARIES_DATABASE_URL": pg_dsn,
        "BOUNDARIES_DB_SCHEMA": db_schema, "BOUNDARIES_WEBHOOK_SECRET": SECRET,
        "BOUNDARIES_QUEUE_HIGH": f"test.{q}.high", "BOUNDARIES_QUEUE_LOW": f"test.{q}.low",
        "BOUNDARIES_MODEL_VERSION": "testmodel_0123abcd", "BOUNDARIES_WEBHOOK_SCHEMAS": '["public"]',
        "BOUNDARIES_PRODUCER_CONNECTIONS": "2",
    })
    return env


def _wait_http(url: str, proc: subprocess.Popen, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}: {proc.stderr.read()[-2000:]!r}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("uvicorn did not start")


def _child_pid(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


@pytest.mark.skipif(subprocess.run(["unshare", "--user", "--map-root-user", "--pid", "--fork", "true"],
                                   capture_output=True).returncode != 0, reason="no unprivileged PID namespaces")
def test_producer_process_exits_on_sigterm_while_an_abandoned_enqueue_waits_on_postgres(
        redis_url, pg_dsn, db_schema):
    # Given a producer run as in production (uvicorn --factory, the event loop in the main thread) and a
    # registry where the jobs table is locked (a migration such as 002's ALTER TABLE + UPDATE of every row,
    # a VACUUM FULL, an operator's LOCK TABLE; PostgreSQL itself answers, so neither keepalives nor
    # tcp_user_timeout end the wait, and the producer sets no statement/lock timeout)
    Database(pg_dsn, db_schema).migrate()
    q = uuid.uuid4().hex[:10]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # PID 1 of its own PID namespace, as in docker-compose.yml (exec-form command, no init: true)
    proc = subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child=SIGKILL",
         sys.executable, "-m", "uvicorn", "producer.app:app_from_env", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=REPO, env=_uvicorn_env(redis_url, pg_dsn, db_schema, q), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    lock = psycopg.connect(pg_dsn, autocommit=False)
    try:
        _wait_http(url, proc)
        lock.execute(f"LOCK TABLE {db_schema}.boundary_inference_jobs IN ACCESS EXCLUSIVE MODE")
        # When a webhook arrives: it is answered 503 at the deadline (its enqueue thread is abandoned,
        # waiting on the lock) …
        r = httpx.post(url + "/webhooks/supabase", headers=AUTH, timeout=10,
                       json=version_payload(str(uuid.uuid4()), str(uuid.uuid4())))
        assert r.status_code == 503, r.text
        # … and then the orchestrator stops the producer (a deploy, a scale-down): SIGTERM
        t0 = time.monotonic()
        producer_pid = _child_pid(proc.pid)
        os.kill(producer_pid, signal.SIGTERM)  # what `docker stop` / Kubernetes send to PID 1
        while Path(f"/proc/{producer_pid}").exists() and time.monotonic() - t0 < 8:
            time.sleep(0.1)
        took = time.monotonic() - t0
        # Then the process exits. Before: uvicorn shuts down (0.4 s without an abandoned thread) and re-raises
        # SIGTERM with its default action — which the kernel ignores for a PID 1 — so the interpreter exits
        # normally and joins the non-daemon AnyIO worker thread still inside the INSERT: the process hangs for
        # as long as the lock is held, until the orchestrator's SIGKILL (docker: 10 s, Kubernetes: 30 s).
        # The same hang follows SIGINT (Ctrl-C) in any process; a plain SIGTERM outside PID 1 exits.
        assert not Path(f"/proc/{producer_pid}").exists(), f"producer still running {took:.1f} s after SIGTERM"
    finally:
        lock.rollback()
        lock.close()
        if proc.poll() is None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        import redis

        r_ = redis.Redis.from_url(redis_url)
        r_.delete(f"test.{q}.high", f"test.{q}.low")
        for k in r_.scan_iter(f"boundaries:dedupe:{db_schema}:*"):
            r_.delete(k)
        r_.close()


def test_a_sweep_whose_send_fails_leaves_its_jobs_for_the_resend(producer_factory, video_id, tenant_id):
    from producer.dispatch import QueueUnavailable
    from producer.sweep import sweep

    # Given a job whose worker died (running, heartbeat an hour old; its message was consumed), and a sweep
    # that requeues it while the broker is briefly unreachable (send_task fails after the UPDATE committed)
    p = producer_factory(resend_unsent_after_s=2.1)
    job_id = p.post(version_payload(video_id, tenant_id)).json()["job_id"]
    p.redis.delete(p.settings.queue_high, p.settings.queue_low)  # the dead worker had taken the message
    with p.registry.db.connection() as c:
        c.execute("UPDATE boundary_inference_jobs SET status = 'running', attempts = 1,"
                  " heartbeat_at = now() - interval '1 hour' WHERE id = %s", (job_id,))
    with pytest.raises(QueueUnavailable):
        sweep(p.settings, p.registry.jobs, _ExplodingCelery(lambda: None))
    job = p.registry.jobs.get(job_id)
    assert job["status"] == "queued" and p.queued() == []
    # When the broker is back and the reconciler and the sweep run again (the sweep's docstring: "a job whose
    # send fails stays queued and is found again by the next sweep")
    time.sleep(2.2)
    resent = reconcile(p.settings, p.registry, p.enqueuer, limit=10)
    swept = sweep(p.settings, p.registry.jobs, p.enqueuer.celery)
    # Then the job gets a message. Before: the sweep bumped updated_at (so the next sweep skips it for
    # sweep_queued_after_s, 30 min) and left sent_at set although nothing was sent (so resend_unsent, which
    # only takes sent_at IS NULL, never does): a requeued job waits 30 min behind a one-second broker blip
    assert len(p.queued()) >= 1, (resent, swept, {k: job[k] for k in ("status", "sent_at", "updated_at")})


@pytest.fixture
def read_only_redis(tmp_path):
    """A real redis-server that is a replica (of a master that does not answer): it answers PING and reads,
    and refuses every write with READONLY — what a client still pointed at the old primary sees after a
    Redis failover (Sentinel / ElastiCache / a DNS name that has not moved yet)."""
    import shutil

    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path), "--replicaof", "127.0.0.1", str(free_port())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis.from_url(url, socket_timeout=0.5).ping():
                break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_readyz_is_not_ready_when_redis_refuses_writes(read_only_redis, pg_dsn, db_schema):
    from boundaries.registry.registry import Registry
    from config.celery_app import make_celery
    from producer.app import create_app
    from producer.dispatch import fail_fast_celery
    from producer.enqueue import fail_fast_redis
    from tests.integration.test_producer_support import ServerThread, make_settings

    db = Database(pg_dsn, db_schema)
    db.migrate()
    settings = make_settings(read_only_redis, pg_dsn, db_schema, producer_connections=1)
    celery_app = fail_fast_celery(make_celery(settings))
    app = create_app(settings, registry=Registry(db), redis_client=fail_fast_redis(read_only_redis),
                     celery_app=celery_app)
    try:
        with ServerThread(app) as server:
            hook = httpx.post(server.url + "/webhooks/supabase", headers=AUTH, timeout=10,
                              json=version_payload(str(uuid.uuid4()), str(uuid.uuid4())))
            ready = httpx.get(server.url + "/readyz", timeout=10)
    finally:
        celery_app.close()
        db.close()
    # Given every webhook is answered 503 (SET NX → READONLY), /readyz must not report the producer ready:
    # it checks the registry for writes (round 1) but Redis only with PING, so the load balancer keeps the
    # instance in rotation and monitoring shows green while every activation is refused
    assert hook.status_code == 503, hook.text
    assert ready.status_code == 503, (ready.status_code, ready.text)


# =====================================================================================================
# Attacks that held up
# =====================================================================================================
class _SlowCelery:
    """The real Celery app behind a slow broker (each send takes ``delay_s``, within the socket timeout)."""

    def __init__(self, app, delay_s: float):
        self.app, self.delay_s = app, delay_s

    def send_task(self, *a, **kw):
        time.sleep(self.delay_s)
        return self.app.send_task(*a, **kw)


def test_pending_fall_through_under_a_slow_send_across_two_instances_gives_one_job_one_message(
        producer_factory, video_id, tenant_id):
    a, b = producer_factory(), producer_factory()
    b.settings = b.enqueuer.settings = a.settings  # one deployment: same queues and schema
    for p in (a, b):
        p.enqueuer.celery = _SlowCelery(p.enqueuer.celery, 0.3)
    n = 16
    barrier = threading.Barrier(n)
    out: list[httpx.Response] = []

    def send(i: int) -> None:
        with httpx.Client(timeout=10) as c:
            barrier.wait()
            out.append((a, b)[i % 2].post(version_payload(video_id, tenant_id), client=c))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in out) == [200] * (n - 1) + [202]
    (job,) = _jobs(a.registry, video_id)
    assert {r.json()["job_id"] for r in out} == {str(job["id"])}
    assert _message_job_ids(a) == [str(job["id"])] and job["sent_at"] is not None
    assert a.redis.get(_dedupe_key(a.settings, video_id)) == str(job["id"]).encode()


def test_concurrent_resend_unsent_sends_each_unsent_job_once_and_never_a_sent_one(producer_factory, tenant_id):
    p = producer_factory(resend_unsent_after_s=2.1)
    unsent, sent = [], []
    for i in range(8):
        ev = JobEvent(video_id=str(uuid.uuid4()), tenant_id=tenant_id, cropped_frames_version=1,
                      model_version=p.settings.model_version, source="webhook")
        job_id, _ = p.registry.jobs.record(ev)  # recorded, never sent (a producer that died mid-enqueue)
        if i % 2:
            p.registry.jobs.mark_sent(job_id)
            sent.append(job_id)
        else:
            unsent.append(job_id)
    time.sleep(2.2)
    barrier = threading.Barrier(3)
    counts: list[int] = []

    def run() -> None:
        barrier.wait()
        counts.append(resend_unsent(p.settings, p.registry, p.enqueuer, limit=100))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == len(unsent)
    assert sorted(_message_job_ids(p)) == sorted(unsent)
    assert resend_unsent(p.settings, p.registry, p.enqueuer, limit=100) == 0


def test_migration_002_on_a_database_with_rows_and_on_rerun(pg_dsn, db_schema, tenant_id):
    db = Database(pg_dsn, db_schema)
    try:
        db.migrate()
        # a registry as it was before 002: no sent_at column, 002 not recorded, jobs already there
        with db.connection() as c:
            c.execute("ALTER TABLE boundary_inference_jobs DROP COLUMN sent_at")
            c.execute("DELETE FROM schema_migrations WHERE name = '002_job_sent_at.sql'")
            for status in ("queued", "running", "completed", "failed"):
                c.execute("INSERT INTO boundary_inference_jobs (video_id, tenant_id, cropped_frames_version,"
                          " model_version, status, priority, source, created_at) VALUES"
                          " (%s, %s, 1, 'm', %s, 'high', 'webhook', now() - interval '1 day')",
                          (str(uuid.uuid4()), tenant_id, status))
        assert db.migrate() == ["002_job_sent_at.sql"]
        with db.connection() as c:
            rows = c.execute("SELECT created_at, sent_at FROM boundary_inference_jobs").fetchall()
        assert len(rows) == 4 and all(r["sent_at"] == r["created_at"] for r in rows)
        assert db.migrate() == []  # re-run: nothing applied, nothing changed
        with db.connection() as c:
            again = c.execute("SELECT created_at, sent_at FROM boundary_inference_jobs").fetchall()
        assert sorted(map(str, again)) == sorted(map(str, rows))
    finally:
        db.close()


# =====================================================================================================
# Third review (docs vs behaviour): defects fixed, each test failed before its fix
# =====================================================================================================
class _UndoAfterConflict:
    """Wraps a registry Database: right after an ``INSERT … ON CONFLICT DO NOTHING`` into the jobs table
    that conflicted (no row returned), the conflicting row is deleted from another connection — the
    owner's undo landing between this request's INSERT and its SELECT."""

    def __init__(self, db: Database, dsn: str):
        self.db, self.dsn, self.fired = db, dsn, 0

    def __getattr__(self, name):
        return getattr(self.db, name)

    def connection(self, **kw):
        from contextlib import contextmanager

        outer = self

        @contextmanager
        def cm():
            with outer.db.connection(**kw) as conn:
                yield _Conn(conn, outer)

        return cm()


class _Conn:
    def __init__(self, conn, owner: _UndoAfterConflict):
        self.conn, self.owner = conn, owner

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def execute(self, query, params=None):
        cur = self.conn.execute(query, params)
        if "ON CONFLICT" in str(query) and cur.rowcount == 0 and not self.owner.fired:
            self.owner.fired += 1
            with psycopg.connect(self.owner.dsn, autocommit=True) as other:
                other.execute(f"DELETE FROM {self.owner.db.schema}.boundary_inference_jobs"
                              " WHERE video_id = %s AND cropped_frames_version = %s", (params[0], params[2]))
        return cur


def test_a_job_undone_between_insert_and_select_is_recorded_again_not_a_500(producer_factory, video_id, tenant_id,
                                                                            pg_dsn):
    from boundaries.registry.registry import Registry

    p = producer_factory()
    ev = JobEvent(video_id=video_id, tenant_id=tenant_id, cropped_frames_version=1,
                  model_version=p.settings.model_version, source="webhook")
    p.registry.jobs.record(ev)  # another request's row, about to be undone (its send failed)
    live = p.enqueuer.registry
    p.enqueuer.registry = Registry(_UndoAfterConflict(live.db, pg_dsn))
    try:
        r = p.post(version_payload(video_id, tenant_id))
    finally:
        p.enqueuer.registry = live
    assert p.enqueuer.registry is live
    assert r.status_code == 202, r.text  # before: TypeError in record_job -> 500
    jobs = _jobs(p.registry, video_id)
    assert [str(j["id"]) for j in jobs] == [r.json()["job_id"]] and jobs[0]["sent_at"] is not None
    assert _message_job_ids(p) == [r.json()["job_id"]]


def test_reconcile_loop_survives_an_unreachable_redis(pg_dsn, db_schema):
    Database(pg_dsn, db_schema).migrate()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOUNDARIES_")}
    env.update(BOUNDARIES_DATABASE_URL=pg_dsn, BOUNDARIES_DB_SCHEMA=db_schema, BOUNDARIES_RECONCILE_INTERVAL_S="1",
               BOUNDARIES_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", BOUNDARIES_MODEL_VERSION="testmodel_0123abcd",
               PYTHONPATH=str(REPO))
    with psycopg.connect(pg_dsn, autocommit=True) as c:  # something for the pass to enqueue
        video_id, tenant_id = str(uuid.uuid4()), str(uuid.uuid4())
        c.execute(f"INSERT INTO {db_schema}.videos (id, tenant_id, current_cropped_frames_version) VALUES (%s, %s, 1)",
                  (video_id, tenant_id))
        c.execute(f"INSERT INTO {db_schema}.cropped_frames_versions (video_id, tenant_id, version, status)"
                  " VALUES (%s, %s, 1, 'active')", (video_id, tenant_id))
    proc = subprocess.Popen([sys.executable, "-m", "boundaries_cli.main", "reconcile", "--loop"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    errors = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"error"' in line]
    assert alive, (out, err[-2000:])  # before: the first QueueUnavailable ended the loop (exit 2)
    assert len(errors) >= 2 and "Redis" in errors[0]["error"], out
