"""Real ``boundaries serve`` and ``boundaries worker`` processes with their output piped (not a terminal):
every line they print is one JSON object; the worker takes Celery's queue, node-name and extra options,
reports a truthful concurrency, sends task events, and a job's Celery task id is its job id."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack

import httpx
import pytest
import redis

from boundaries.events import JobEvent
from boundaries.model_versions import CLASSICAL_MODEL_VERSION
from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from boundaries.storage.factory import store_from_settings
from boundaries_cli.embedded import child_env
from boundaries_cli.main_job import _jsonable, webhook_payload
from config.celery_app import make_celery
from producer.dispatch import dispatch, producer_celery
from tests.conftest import REPO
from tests.integration.faults import synthetic_video
from tests.integration.harness import e2e_settings, wait_until
from tests.services import free_port

pytestmark = pytest.mark.integration

_wait = functools.partial(wait_until, poll_s=0.2)


class Process:
    """A ``boundaries`` subprocess whose stdout and stderr are pipes, read line by line in threads."""

    def __init__(self, args: list[str], env: dict):
        self.args = args
        self.proc = subprocess.Popen([sys.executable, "-m", "boundaries_cli.main", *args], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.lines: list[tuple[str, str]] = []  # (stream, line)
        self.readers = [threading.Thread(target=self._read, args=(name, stream), daemon=True)
                        for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))]
        for t in self.readers:
            t.start()

    def _read(self, name: str, stream) -> None:
        for raw in stream:
            self.lines.append((name, raw.decode("utf-8", "replace").rstrip("\n")))

    def events(self) -> list[dict]:
        """Every non-empty line parsed as JSON (fails naming the first line that is not)."""
        out = []
        for stream, line in list(self.lines):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                pytest.fail(f"{self.args[0]} printed a line that is not JSON on {stream}: {line[:300]!r}")
        return out

    def wait_for(self, predicate, timeout_s: float, what: str) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for e in self.events():
                if predicate(e):
                    return e
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = "\n".join(line for _, line in self.lines[-30:])
        raise AssertionError(f"{what} not seen from {self.args[0]} within {timeout_s} s (exit {self.proc.poll()}):\n"
                             f"{tail}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for t in self.readers:
            t.join(timeout=5)
        return self.proc.returncode



class TaskEvents:
    """Celery task events of the broker, collected in a thread (as Flower receives them)."""

    def __init__(self, app):
        self.app, self.events, self.receiver = app, [], None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()
        self.thread.start()
        assert self.ready.wait(10), "event receiver did not start"

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            self.receiver = self.app.events.Receiver(conn, handlers={"*": self.events.append})
            self.receiver.consume  # noqa: B018 - the queue is declared when capture starts
            self.ready.set()
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def of(self, task_id: str) -> list[str]:
        return [e["type"] for e in list(self.events) if e.get("uuid") == task_id]

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(timeout=10)


@pytest.fixture
def env_settings(redis_url, pg_dsn, db_schema, tmp_path):
    settings = e2e_settings(redis_url=redis_url, pg_dsn=pg_dsn, db_schema=db_schema, tmp_path=tmp_path,
                            local_runner_workers=1)
    db = Database(pg_dsn, db_schema)
    db.migrate()
    yield settings, Registry(db)
    client = redis.Redis.from_url(redis_url)
    client.delete(settings.queue_high, settings.queue_low)
    client.close()
    db.close()


def _active_version(settings, registry: Registry, store, seed: int) -> tuple[str, dict]:
    """A synthetic video version registered processing → active; returns its id and the webhook body."""
    tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
    res = synthetic_video(store, settings, tenant, vid, frames=20, seed=seed)
    registry.upsert_video(vid, tenant, 1)
    common = dict(video_id=vid, tenant_id=tenant, version=1, storage_prefix=res.frames_prefix,
                  layout_db_storage_key=res.layout_db_key, total_frames=res.total_frames, chunk_count=res.chunk_count)
    old = _jsonable(registry.upsert_version(**common, status="processing"))
    new = _jsonable(registry.upsert_version(**common, status="active"))
    return vid, webhook_payload(settings, new, old)


def test_serve_and_worker_log_only_json_and_the_worker_takes_celerys_options(env_settings):
    settings, registry = env_settings
    store = store_from_settings(settings)
    env = child_env(settings) | {"BOUNDARIES_LOG_LEVEL": "INFO", "PYTHONPATH": str(REPO)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    node = f"obs-{uuid.uuid4().hex[:8]}@%h"
    control = make_celery(settings)
    sender = producer_celery(settings)
    with ExitStack() as es:
        es.callback(control.close)
        es.callback(sender.close)
        serve = Process(["serve", "--port", str(port)], env)
        es.callback(serve.stop)
        worker = Process(["worker", "-n", node, "--", "--prefetch-multiplier", "2"], env)
        es.callback(worker.stop)
        events = TaskEvents(control)
        es.callback(events.stop)

        ready = worker.wait_for(lambda e: e.get("event") == "worker.ready", 60, "worker.ready")
        hostname = ready["node"]
        assert hostname.startswith("obs-") and "%h" not in hostname
        assert ready["pool"] == "solo" and ready["concurrency"] == 1
        assert sorted(ready["queues"]) == sorted([settings.queue_high, settings.queue_low])
        _wait(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
              if serve.proc.poll() is None else pytest.fail("serve exited"), 30, "serve /healthz")

        # the node answers `celery inspect` under its name, with the pool's true concurrency and the
        # extra option given after --
        stats = control.control.inspect(destination=[hostname], timeout=5).stats()
        assert stats and list(stats) == [hostname]
        assert stats[hostname]["pool"]["max-concurrency"] == 1
        assert stats[hostname]["prefetch_count"] == 2

        vid, payload = _active_version(settings, registry, store, seed=1)
        auth = {"Authorization": f"Bearer {settings.webhook_secret.get_secret_value()}"}
        r = httpx.post(f"http://127.0.0.1:{port}/webhooks/supabase", json=payload, headers=auth, timeout=10)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        assert httpx.post(f"http://127.0.0.1:{port}/webhooks/supabase", json=payload, timeout=10).status_code == 401
        job = _wait(lambda: (j := registry.jobs.get(job_id)) and j["status"] in ("completed", "failed") and j,
                    120, "job finished")
        assert job["status"] == "completed", job["error_message"]
        # task events reach a receiver (Flower), under the job's id as the Celery task id
        _wait(lambda: "task-succeeded" in events.of(job_id), 15, "task-succeeded event for the job id")
        assert {"task-sent", "task-received", "task-started"} <= set(events.of(job_id))
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
        serve.wait_for(lambda e: e.get("logger") == "uvicorn.access" and "/metrics" in e.get("event", ""), 10,
                       "access log line of GET /metrics")
        worker.wait_for(lambda e: e.get("event") == "job.completed", 10, "job.completed")
        serve.stop()  # uvicorn re-raises the SIGTERM after its graceful shutdown: status -15
        worker.stop()

    serve_events, worker_events = serve.events(), worker.events()  # every non-empty line is JSON
    assert len(serve_events) >= 5 and len(worker_events) >= 5
    assert {e.get("logger") for e in serve_events} >= {"uvicorn.error", "uvicorn.access"}
    assert any(e.get("logger", "").startswith("celery") for e in worker_events)
    assert any(e.get("event") == "webhook.accepted" for e in serve_events)
    # one frames.discovered per job: the shard's re-listing in the runner's child is not logged again
    assert [e.get("event") for e in worker_events].count("frames.discovered") == 1
    assert any(e.get("event") == "shard.completed" for e in worker_events), "the runner child's lines are missing"


def test_a_worker_on_the_low_queue_leaves_the_high_queue_alone(env_settings):
    settings, registry = env_settings
    store = store_from_settings(settings)
    env = child_env(settings) | {"BOUNDARIES_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
    sender = producer_celery(settings)
    jobs = {}
    for priority, seed in (("high", 2), ("low", 3)):
        vid, payload = _active_version(settings, registry, store, seed)
        rec = payload["record"]
        event = JobEvent(video_id=vid, tenant_id=rec["tenant_id"], cropped_frames_version=1,
                         model_version=CLASSICAL_MODEL_VERSION, priority=priority)
        job_id, _ = registry.jobs.record(event)
        dispatch(sender, settings, event.model_copy(update={"job_id": job_id}))
        jobs[priority] = job_id
    sender.close()
    worker = Process(["worker", "-Q", settings.queue_low, "-n", f"low-{uuid.uuid4().hex[:8]}@%h"], env)
    try:
        low = _wait(lambda: (j := registry.jobs.get(jobs["low"])) and j["status"] in ("completed", "failed") and j,
                    120, "the low job finished")
        assert low["status"] == "completed", low["error_message"]
        r = redis.Redis.from_url(settings.redis_url)
        try:
            assert r.llen(settings.queue_high) == 1 and r.llen(settings.queue_low) == 0
        finally:
            r.close()
        assert registry.jobs.get(jobs["high"])["status"] == "queued"
        assert registry.jobs.attempts_of(jobs["high"]) == []
    finally:
        worker.stop()
    worker.events()  # JSON only, at WARNING too


def test_worker_rejects_a_concurrency_the_solo_pool_cannot_run(env_settings):
    settings, _ = env_settings
    env = child_env(settings) | {"PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "boundaries_cli.main", "worker", "-c", "3"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "--concurrency 3" in out.stderr and "--pool prefork" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
