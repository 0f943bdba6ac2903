"""``boundaries run``: the main job end to end on one machine, through the production code path.

ingest → register an active cropped-frames version → POST the Supabase-shaped webhook to the
producer over HTTP → a real Celery worker process handles the job → wait with a progress bar →
print the results database location, run id, pair count, wall time and caption segments.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from boundaries.frames.keys import shard_output_key
from boundaries.ingest import ingest_video
from boundaries.model_versions import resolve_model_version
from boundaries.registry.registry import Registry
from boundaries.results_db import read_results_db
from boundaries.segments import Segment, segments_from_labels
from boundaries.shards import plan_shards
from boundaries.storage.factory import store_from_settings
from boundaries_cli.embedded import child_env, with_embedded_services
from config.settings import PLACEHOLDER_WEBHOOK_SECRET, Settings
from worker.deps import database


@dataclass
class RunReport:
    status: str
    video_id: str
    tenant_id: str
    model_version: str
    run_id: str | None = None
    results_key: str | None = None
    results_location: str | None = None
    pairs: int = 0
    total_frames: int = 0
    wall_s: float = 0.0
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_producer(settings: Settings, stack: ExitStack) -> str:
    """Serve the producer app with uvicorn on a free loopback port in a thread. Returns its base URL."""
    import uvicorn

    from producer.app import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="producer", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("producer did not start within 20 s")
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(timeout=10)

    stack.callback(stop)
    return f"http://127.0.0.1:{port}"


def start_worker(settings: Settings, stack: ExitStack, log_path: Path) -> subprocess.Popen:
    """A real Celery worker process on both priority queues (solo pool: one job at a time per worker
    process, its shards fanned out by the runner; acks_late)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "ab")  # noqa: SIM115 - closed by the stack
    stack.callback(log_file.close)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.celery_entry", "worker", "-Q",
         f"{settings.queue_high},{settings.queue_low}", "--pool", "solo",
         "-l", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-n", f"boundaries-{uuid.uuid4().hex[:8]}@%h"],
        env=child_env(settings), stdout=log_file, stderr=subprocess.STDOUT,
    )

    def stop():
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    stack.callback(stop)
    return proc


def webhook_payload(settings: Settings, record: dict, old_record: dict | None) -> dict:
    """Supabase Database Webhook body (COMPAT.md §7) for an UPDATE of cropped_frames_versions."""
    return {"type": "UPDATE" if old_record else "INSERT", "table": "cropped_frames_versions",
            "schema": settings.db_schema, "record": record, "old_record": old_record}


def _jsonable(row: dict) -> dict:
    return json.loads(json.dumps(row, default=str))


def run_main_job(video: Path, crop: tuple[float, float, float, float], anchor: str, settings: Settings,
                 console: Console, *, timeout_s: float = 3600.0) -> RunReport:
    t0 = time.perf_counter()
    with ExitStack() as stack:
        settings = with_embedded_services(settings, stack)
        if settings.webhook_secret.get_secret_value() in ("", PLACEHOLDER_WEBHOOK_SECRET):
            settings = settings.model_copy(update={"webhook_secret": SecretStr(secrets.token_urlsafe(24))})
        db = database(settings)
        stack.callback(db.close)
        db.migrate()
        registry = Registry(db)
        store = store_from_settings(settings)
        model_version = resolve_model_version(settings)
        tenant_id, video_id, version = str(uuid.uuid4()), str(uuid.uuid4()), 1
        report = RunReport("failed", video_id, tenant_id, model_version)

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            task = progress.add_task("ingest: decode, crop, encode chunks", total=None)
            ingest = ingest_video(video, crop, anchor, store, settings, tenant_id, video_id, version,
                                  progress=lambda n: progress.update(task, completed=n))
            progress.update(task, total=ingest.total_frames, completed=ingest.total_frames)
        report.total_frames = ingest.total_frames
        registry.upsert_video(video_id, tenant_id, version)
        common = dict(video_id=video_id, tenant_id=tenant_id, version=version, storage_prefix=ingest.frames_prefix,
                      layout_db_storage_key=ingest.layout_db_key, total_frames=ingest.total_frames,
                      chunk_count=ingest.chunk_count)
        old = _jsonable(registry.upsert_version(**common, status="processing"))
        new = _jsonable(registry.upsert_version(**common, status="active"))

        base_url = start_producer(settings, stack)
        worker = start_worker(settings, stack, settings.state_dir / "logs" / "worker.log")
        resp = httpx.post(f"{base_url}/webhooks/supabase", json=webhook_payload(settings, new, old), timeout=10,
                          headers={"Authorization": f"Bearer {settings.webhook_secret.get_secret_value()}"})
        if resp.status_code != 202:
            report.error = f"producer answered {resp.status_code}: {resp.text[:300]}"
            return report
        console.print(f"webhook accepted: {resp.json()}", soft_wrap=True)

        shards = plan_shards(ingest.total_frames, settings.shard_pairs)
        out_keys = [shard_output_key(settings.shard_output_key_template, tenant_id, video_id, version, model_version,
                                     a, b) for a, b in shards]
        deadline = time.monotonic() + timeout_s
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task("inference: shards", total=len(out_keys))
            while True:
                job = registry.find_job(video_id, version, model_version)
                progress.update(task, completed=sum(store.exists(k) for k in out_keys),
                                description=f"inference: shards (job {job['status'] if job else 'pending'})")
                if job and job["status"] in ("completed", "failed"):
                    break
                if worker.poll() is not None:
                    report.error = f"worker exited with code {worker.returncode}; see {settings.state_dir}/logs"
                    return report
                if time.monotonic() > deadline:
                    report.error = f"timed out after {timeout_s:.0f} s waiting for the job"
                    return report
                time.sleep(0.3)
        if job["status"] == "failed":
            report.error = job["error_message"]
            return report
        run = registry.get_run(video_id, version, model_version)
        data = store.get_bytes(run["wasabi_storage_key"])
        results = read_results_db(data)
        report.status = "completed"
        report.run_id = run["run_id"]
        report.results_key = run["wasabi_storage_key"]
        report.results_location = (str(settings.store_root() / run["wasabi_storage_key"])
                                   if settings.storage_backend == "local"
                                   else f"s3://{settings.s3_bucket}/{run['wasabi_storage_key']}")
        report.pairs = len(results["frame1_index"])
        report.segments = segments_from_labels(results["forward_labels"])
        report.wall_s = time.perf_counter() - t0
        return report
