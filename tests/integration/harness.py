"""End-to-end harness (no tests here): settings on the test services, a real producer (uvicorn on
loopback), real Celery worker processes, and helpers to ingest, post webhooks and wait for jobs."""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from boundaries.ingest import IngestResult, ingest_video
from boundaries.model_versions import CLASSICAL_MODEL_VERSION
from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from boundaries.storage.factory import store_from_settings
from boundaries_cli.main_job import _jsonable, start_due_retries, start_producer, start_worker, webhook_payload
from config.settings import Settings

POPEYE = "derived/popeye_burn10/T00-1_p3_srtburn_10fps.mp4"
POPEYE_CROP = (0.05, 0.78, 0.95, 0.99)


def wait_until(cond, timeout_s: float, what: str, poll_s: float = 0.1):
    """``cond()``'s first truthy value, polled every ``poll_s`` seconds; TimeoutError naming ``what``
    after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"{what} not within {timeout_s} s")


def e2e_settings(*, redis_url: str, pg_dsn: str, db_schema: str, tmp_path: Path, s3_endpoint: str | None = None,
                 s3_bucket: str | None = None, **overrides) -> Settings:
    q = uuid.uuid4().hex[:10]
    base = dict(redis_url=redis_url, database_url=SecretStr(pg_dsn), db_schema=db_schema, state_dir=tmp_path / "state",
                queue_high=f"t{q}.high", queue_low=f"t{q}.low", webhook_secret=SecretStr("e2e-" + q),
                shard_pairs=200, local_runner_workers=2, retry_backoff_base_s=0.2, retry_backoff_max_s=1.0,
                retry_poll_interval_s=0.2)
    if s3_endpoint:
        base |= dict(storage_backend="s3", s3_bucket=s3_bucket, s3_endpoint_url=s3_endpoint,
                     s3_access_key_id=SecretStr("testing"), s3_secret_access_key=SecretStr("testing"))
    else:
        base |= dict(local_store_dir=tmp_path / "store")
    return Settings(**(base | overrides))


@dataclass
class Stack:
    settings: Settings
    registry: Registry
    store: object
    producer_url: str
    stack: ExitStack
    workers: list = field(default_factory=list)

    def start_worker(self, name: str = "w"):
        log = self.settings.state_dir / "logs" / f"{name}-{len(self.workers)}.log"
        proc = start_worker(self.settings, self.stack, log)
        self.workers.append(proc)
        return proc

    def ingest(self, video: Path, crop=POPEYE_CROP, anchor="center", version: int = 1) -> tuple[str, str, IngestResult]:
        tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
        res = ingest_video(video, crop, anchor, self.store, self.settings, tenant, vid, version)
        self.registry.upsert_video(vid, tenant, version)
        return tenant, vid, res

    def activate(self, tenant: str, vid: str, res: IngestResult, version: int = 1) -> dict:
        """Register the version as processing then active; returns the webhook body for that UPDATE."""
        common = dict(video_id=vid, tenant_id=tenant, version=version, storage_prefix=res.frames_prefix,
                      layout_db_storage_key=res.layout_db_key, total_frames=res.total_frames,
                      chunk_count=res.chunk_count)
        old = _jsonable(self.registry.upsert_version(**common, status="processing"))
        new = _jsonable(self.registry.upsert_version(**common, status="active"))
        return webhook_payload(self.settings, new, old)

    def post(self, payload: dict) -> httpx.Response:
        return httpx.post(f"{self.producer_url}/webhooks/supabase", json=payload, timeout=10, headers={
            "Authorization": f"Bearer {self.settings.webhook_secret.get_secret_value()}"})

    def wait_job(self, vid: str, model_version: str = CLASSICAL_MODEL_VERSION, *, version: int = 1,
                 timeout_s: float = 180, statuses=("completed", "failed")) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.registry.jobs.find(vid, version, model_version)
            if job and job["status"] in statuses:
                return job
            time.sleep(0.2)
        raise TimeoutError(f"job for video {vid} not in {statuses} after {timeout_s} s: {job}; "
                           f"worker logs in {self.settings.state_dir / 'logs'}")


def open_stack(settings: Settings, stack: ExitStack) -> Stack:
    db = Database(settings.database_url.get_secret_value(), settings.db_schema)
    db.migrate()
    stack.callback(db.close)
    registry = Registry(db)
    url = start_producer(settings, stack)
    start_due_retries(settings, registry, stack)  # as `boundaries run` and `boundaries reconcile --loop` do
    return Stack(settings, registry, store_from_settings(settings), url, stack)
