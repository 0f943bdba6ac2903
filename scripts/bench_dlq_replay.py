"""Dead-letter replay under load: do fresh events still start promptly while a big replay runs?

Each run, on real processes: a producer (``boundaries serve``), two workers (``boundaries worker``, solo
pool) and ``boundaries dlq replay --all --rate R --priority P`` replaying ``--dead-letters`` dead letters
while ``--fresh`` webhooks are POSTed at ``--fresh-rate``/s (starting ``--fresh-delay`` s after the replay
so that its backlog has formed). Jobs are short: the runner sleeps ``--job-ms`` per job and writes a real
shard output (the GPU is the only thing simulated, as in bench_fanout.py); the rest is the real pipeline
(registry claim, chunk listing, layout.db, aggregation, results file, run row).

Two runs in one invocation, same sizes: **baseline** replays to the high queue (where fresh webhooks
go: what a replay did before issue 17), **candidate** replays to the low queue (the default). For each
it prints the queue wait of fresh jobs (job recorded by the producer -> its first attempt started;
PostgreSQL clocks) p50/p95/max, the median job duration (attempt start -> finish), the replay's send
time, and the checks: every job completed exactly once (one run row, one results file, one runner
execution per video), no dead letter lost or duplicated (each replayed once: ``replay_count`` 1, no new
dead letter). Target: candidate fresh p95 <= about one median job duration (printed ``MISSED`` when above
1.5x), baseline shown for the ratio.

Services: the machine's Redis and PostgreSQL (``--redis``, ``--dsn``); a fresh schema, queue names and
local object store per run, removed at the end.

Usage: ``.venv/bin/python scripts/bench_dlq_replay.py [--dead-letters 120] [--fresh 40] [--rate 40]
[--job-ms 100]`` (the issue's full size: ``--dead-letters 500 --fresh 100``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from boundaries.shards import ShardRequest, ShardSummary, encode_output  # noqa: E402

CONFIG_ENV = "BENCH_DLQ_CONFIG"
FRAMES, W, H = 20, 16, 8


# --- runner (built inside each worker process through settings.runner_factory) ---------------------
class SleepingRunner:
    """A shard costs ``job_s / shards`` of sleep and writes a real shard output; every execution is counted
    in Redis (``{ns}:runs``, per video) so the benchmark can check each job ran exactly once."""

    def __init__(self, cfg: dict):
        import redis

        from boundaries.storage.local import LocalStore

        self.job_s, self.ns = cfg["job_s"], cfg["ns"]
        self.store = LocalStore(Path(cfg["store"]))
        self.r = redis.Redis.from_url(cfg["redis_url"])

    def map(self, requests: list[ShardRequest]) -> list[ShardSummary]:
        out = []
        for req in requests:
            t0 = time.perf_counter()
            time.sleep(self.job_s / len(requests))
            probs = np.tile(np.array([0.9, 0.04, 0.02, 0.02, 0.02], np.float32), (req.pairs, 1))
            self.store.put_bytes(req.output_key, encode_output(req.first_pair, req.end_pair, req.model_version, probs,
                                                               probs, np.zeros(req.pairs, np.float32)))
            s = time.perf_counter() - t0
            out.append(ShardSummary(shard_id=req.shard_id, pairs=req.pairs, seconds=s, pairs_per_s=req.pairs / s,
                                    decode_s=0.0, model_s=s, output_key=req.output_key, device="simulated"))
        self.r.hincrby(f"{self.ns}:runs", requests[0].video_id, 1)
        return out

    def close(self) -> None:
        self.r.close()


def sleeping_runner(settings) -> SleepingRunner:
    return SleepingRunner(json.loads(os.environ[CONFIG_ENV]))


# --- setup -------------------------------------------------------------------------------------------
def write_template(store, settings, tenant: str, video: str):
    """A 20-frame 16x8 VP9 frame store + layout.db (COMPAT.md §2–3); returns (frames_prefix, layout_key,
    chunk_count)."""
    import io

    from PIL import Image

    from boundaries.frames.keys import frames_prefix, layout_db_key
    from boundaries.frames.layoutdb import build_layout_db
    from boundaries.frames.writer import ChunkWriter
    from boundaries.layout_config import LayoutConfig

    prefix = frames_prefix(settings.frames_prefix_template, tenant, video, 1)
    with ChunkWriter(store, prefix, W, H) as w:
        for i in range(FRAMES):
            img = np.full((H, W, 3), 16, np.uint8)
            img[2:6, (i // 5) % 10:(i // 5) % 10 + 6] = 230
            w.write(img)
    png = io.BytesIO()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(png, format="PNG")
    cfg = LayoutConfig(frame_width=W, frame_height=32, crop_left=0, crop_top=24, crop_right=W, crop_bottom=32,
                       anchor_type="center", ocr_visualization_png=png.getvalue())
    key = layout_db_key(settings.layout_db_key_template, tenant, video)
    store.put_bytes(key, build_layout_db(cfg))
    return prefix, key, w.chunks_written


def copy_video(store, settings, template, tenant: str, video: str):
    from boundaries.frames.keys import frames_prefix, layout_db_key

    src_prefix, src_key, chunks = template
    prefix = frames_prefix(settings.frames_prefix_template, tenant, video, 1)
    for k in list(store.list_keys(src_prefix)):
        store.put_bytes(prefix + k[len(src_prefix):], store.get_bytes(k))
    key = layout_db_key(settings.layout_db_key_template, tenant, video)
    store.put_bytes(key, store.get_bytes(src_key))
    return prefix, key, chunks


def register(registry, tenant, video, template, status="active") -> tuple[dict, dict]:
    """The version as processing, then ``status``; returns (new, old) rows as JSON-able dicts."""
    prefix, key, chunks = template
    registry.upsert_video(video, tenant, 1)
    common = dict(video_id=video, tenant_id=tenant, version=1, storage_prefix=prefix, layout_db_storage_key=key,
                  total_frames=FRAMES, chunk_count=chunks)
    old = json.loads(json.dumps(registry.upsert_version(**common, status="processing"), default=str))
    new = json.loads(json.dumps(registry.upsert_version(**common, status=status), default=str))
    return new, old


def make_dead_letter(registry, event) -> str:
    """The job ran once and failed permanently (layout.db unreadable during the outage), through the
    job-row transitions the worker uses (``Jobs``: record, claim, dead_letter)."""
    job_id, _ = registry.jobs.record(event)
    attempt = registry.jobs.claim(job_id)
    return registry.jobs.dead_letter(job_id, attempt, event.model_dump(mode="json") | {"job_id": job_id},
                                     error_type="layout_error",
                                     error_message="LayoutError: layout.db unreadable (storage outage)")


# --- one run -----------------------------------------------------------------------------------------
def boundaries_cmd(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "boundaries"), *args]


def wait_for(pred, timeout_s: float, what: str, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(poll_s)
    raise TimeoutError(f"{what} not within {timeout_s:.0f} s")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * len(xs) + 0.5) - 1))]


def run_once(label: str, replay_priority: str | None, args) -> dict:
    """One run; ``replay_priority`` None: the reference, fresh webhooks alone (no dead letters, no replay)."""
    import httpx
    import psycopg
    import redis
    from pydantic import SecretStr

    from boundaries.events import JobEvent
    from boundaries.model_versions import resolve_model_version
    from boundaries.registry.db import Database
    from boundaries.registry.registry import Registry
    from boundaries.storage.local import LocalStore
    from boundaries_cli.embedded import child_env
    from config.settings import Settings

    q = uuid.uuid4().hex[:10]
    schema = f"bench_dlq_{q}"
    tmp = Path(tempfile.mkdtemp(prefix="bench_dlq_"))
    port = free_port()
    secret = "bench-" + q
    settings = Settings(redis_url=args.redis, database_url=SecretStr(args.dsn), db_schema=schema,
                        state_dir=tmp / "state", local_store_dir=tmp / "store", storage_backend="local",
                        queue_high=f"bench{q}.high", queue_low=f"bench{q}.low", webhook_secret=SecretStr(secret),
                        runner_factory="scripts.bench_dlq_replay:sleeping_runner", shard_pairs=10_000,
                        replay_priority=replay_priority or "low", queue_order_strategy=args.queue_order)
    ns = f"bench_dlq:{q}"
    env = child_env(settings) | {CONFIG_ENV: json.dumps({"job_s": args.job_ms / 1000, "ns": ns, "redis_url": args.redis,
                                                          "store": str(tmp / "store")}),
                                 "PYTHONPATH": str(REPO), "BOUNDARIES_LOG_LEVEL": "WARNING"}
    r = redis.Redis.from_url(args.redis)
    db = Database(args.dsn, schema)
    stack = ExitStack()
    try:
        db.migrate()
        registry = Registry(db)
        store = LocalStore(tmp / "store")
        mv = resolve_model_version(settings)
        t_setup = time.perf_counter()
        template = write_template(store, settings, str(uuid.uuid4()), str(uuid.uuid4()))
        dl_videos, fresh = [], []
        n_dead = args.dead_letters if replay_priority else 0
        for _ in range(n_dead):
            tenant, video = str(uuid.uuid4()), str(uuid.uuid4())
            register(registry, tenant, video, copy_video(store, settings, template, tenant, video))
            event = JobEvent(video_id=video, tenant_id=tenant, cropped_frames_version=1, model_version=mv,
                             source="webhook")
            make_dead_letter(registry, event)
            dl_videos.append((tenant, video))
        for _ in range(args.fresh):
            tenant, video = str(uuid.uuid4()), str(uuid.uuid4())
            new, old = register(registry, tenant, video, copy_video(store, settings, template, tenant, video))
            fresh.append((tenant, video, {"type": "UPDATE", "table": "cropped_frames_versions", "schema": schema,
                                          "record": new, "old_record": old}))
        setup_s = time.perf_counter() - t_setup

        procs = []
        logs = tmp / "logs"
        logs.mkdir()

        def spawn(name, *cmd):
            f = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed by the stack
            stack.callback(f.close)
            p = subprocess.Popen(boundaries_cmd(*cmd), env=env, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
            procs.append(p)
            stack.callback(stop, p)
            return p

        spawn("producer", "serve", "--port", str(port))
        for i in range(args.workers):
            spawn(f"worker{i}", "worker", "--loglevel", "INFO")
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: ok(httpx, f"{url}/healthz"), 60, "producer /healthz")
        wait_for(lambda: all(b"ready." in (logs / f"worker{i}.log").read_bytes() for i in range(args.workers)), 90,
                 "workers ready")

        # the replay (a real CLI process), then fresh webhooks at a fixed rate once its backlog formed
        t0 = time.monotonic()
        replay = None
        if replay_priority:
            replay_out = open(tmp / "replay.json", "wb")  # noqa: SIM115
            stack.callback(replay_out.close)
            replay = subprocess.Popen(boundaries_cmd("dlq", "replay", "--all", "--rate", str(args.rate), "--priority",
                                                     replay_priority), env=env, cwd=REPO, stdout=replay_out,
                                      stderr=subprocess.PIPE)
        time.sleep(args.fresh_delay)
        codes = []
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(timeout=10) as client:
            t_fresh = time.monotonic()
            for i, (_, _, payload) in enumerate(fresh):
                pause = t_fresh + i / args.fresh_rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                codes.append(client.post(f"{url}/webhooks/supabase", json=payload, headers=headers).status_code)
        replay_err, replay_summary = b"", {"queued": 0, "seconds": 0.0}
        if replay is not None:
            _, replay_err = replay.communicate(timeout=args.timeout)
            replay_summary = json.loads((tmp / "replay.json").read_text())["summary"]
        replay_s = time.monotonic() - t0
        total = n_dead + args.fresh

        def done() -> bool:
            with db.connection() as c:
                return c.execute("SELECT count(*) AS n FROM boundary_inference_jobs WHERE status IN"
                                 " ('completed', 'failed')").fetchone()["n"] >= total

        wait_for(done, args.timeout, f"{total} jobs finished ({label}); logs in {logs}", poll_s=0.5)
        drain_s = time.monotonic() - t0
        time.sleep(1.0)  # a duplicate message that were to run would start a second attempt now

        with db.connection() as c:
            jobs = {str(j["video_id"]): j for j in c.execute(
                "SELECT j.video_id, j.status, j.attempts, j.created_at, a.started_at, a.finished_at"
                " FROM boundary_inference_jobs j JOIN boundary_inference_job_attempts a"
                " ON a.job_id = j.id AND a.attempt = j.attempts").fetchall()}
            runs = {str(row["video_id"]): row["n"] for row in c.execute(
                "SELECT video_id, count(*) AS n FROM boundary_inference_runs GROUP BY video_id").fetchall()}
            dls = c.execute("SELECT count(*) AS n, count(*) FILTER (WHERE replay_count = 1) AS once,"
                            " count(*) FILTER (WHERE replay_count > 1) AS more"
                            " FROM boundary_inference_dead_letters").fetchone()
        executions = {k.decode(): int(v) for k, v in r.hgetall(f"{ns}:runs").items()}
        results = {}
        for key in store.list_keys("videos/"):
            if "/boundaries/" in key:
                vid = key.split("/")[2]
                results[vid] = results.get(vid, 0) + 1

        all_videos = [v for _, v in dl_videos] + [v for _, v, _ in fresh]
        waits = [(jobs[v]["started_at"] - jobs[v]["created_at"]).total_seconds() for _, v, _ in fresh if v in jobs]
        durations = [(j["finished_at"] - j["started_at"]).total_seconds() for j in jobs.values() if j["finished_at"]]
        checks = {
            "fresh accepted 202": codes.count(202) == len(fresh),
            "every job completed": sum(j["status"] == "completed" for j in jobs.values()) == total,
            "one run row each": all(runs.get(v) == 1 for v in all_videos) and len(runs) == total,
            "one results file each": all(results.get(v) == 1 for v in all_videos) and len(results) == total,
            "one runner execution each": all(executions.get(v) == 1 for v in all_videos) and len(executions) == total,
            "replay queued every dead letter": replay_summary.get("queued") == n_dead,
            "dead letters kept, each replayed once": (dls["n"], dls["once"], dls["more"]) == (n_dead, n_dead, 0),
        }
        return {"label": label, "replay_priority": replay_priority, "setup_s": setup_s, "waits": waits,
                "job_s_median": statistics.median(durations), "job_s_p95": pct(durations, 95),
                "replay_send_s": replay_summary["seconds"],
                "replay_s": replay_s, "drain_s": drain_s, "checks": checks, "replay_summary": replay_summary,
                "replay_stderr": replay_err.decode(errors="replace").strip().splitlines()[-1:]}
    finally:
        stack.close()
        db.close()
        r.delete(f"{ns}:runs", settings.queue_high, settings.queue_low)
        r.close()
        with psycopg.connect(args.dsn, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        shutil.rmtree(tmp, ignore_errors=True)


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def ok(httpx, url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dead-letters", type=int, default=120, help="dead letters replayed (the issue's size: 500)")
    p.add_argument("--fresh", type=int, default=40, help="fresh webhooks during the replay (the issue's size: 100)")
    p.add_argument("--fresh-rate", type=float, default=10.0, help="fresh webhooks per second")
    p.add_argument("--fresh-delay", type=float, default=2.0, help="seconds after the replay starts")
    p.add_argument("--rate", type=float, default=40.0, help="replay rate, dead letters per second")
    p.add_argument("--job-ms", type=float, default=100.0, help="simulated GPU time per job, milliseconds")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--queue-order", default="priority", choices=("priority", "round_robin", "sorted"))
    p.add_argument("--only", choices=("reference", "baseline", "candidate"), help="run one side only")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = p.parse_args(argv)

    from config.logging import configure_logging

    configure_logging("CRITICAL")  # the setup's dead letters are logged as errors by the worker's transition
    print(f"{args.dead_letters} dead letters replayed at {args.rate:g}/s while {args.fresh} fresh webhooks arrive at "
          f"{args.fresh_rate:g}/s ({args.fresh_delay:g} s after the replay starts); {args.workers} workers "
          f"(boundaries worker, solo), jobs sleep {args.job_ms:g} ms; queue order {args.queue_order}", flush=True)
    sides = [("reference", None), ("baseline", "high"), ("candidate", "low")]
    rows = [run_once(label, prio, args) for label, prio in sides if args.only in (None, label)]
    print(f"{'run':<10} {'replays to':<10} {'fresh wait p50':>14} {'p95':>7} {'max':>7} {'job median':>10} "
          f"{'p95/job':>7} {'replay send s':>13} {'all done s':>10}")
    for row in rows:
        w = row["waits"]
        to = row["replay_priority"] or "(none)"
        print(f"{row['label']:<10} {to:<10} {statistics.median(w):>13.2f}s {pct(w, 95):>6.2f}s "
              f"{max(w):>6.2f}s {row['job_s_median']:>9.3f}s {pct(w, 95) / row['job_s_median']:>7.1f} "
              f"{row['replay_send_s']:>13.1f} {row['drain_s']:>10.1f}")
    failed = False
    for row in rows:
        for name, passed in row["checks"].items():
            failed |= not passed
            print(f"  {row['label']}: {name}: {'ok' if passed else 'FAILED'}")
        if row["replay_priority"]:
            print(f"  {row['label']}: replay: {' '.join(row['replay_stderr'])}")
    by = {row["label"]: row for row in rows}
    if "candidate" in by:
        c = by["candidate"]
        ratio = pct(c["waits"], 95) / c["job_s_median"]
        verdict = "met" if ratio <= 1.5 else "MISSED"
        print(f"target: candidate fresh p95 within about one job duration: {pct(c['waits'], 95):.2f} s vs "
              f"{c['job_s_median']:.3f} s median job ({ratio:.1f}x) {verdict}; job p95 {c['job_s_p95']:.3f} s")
        if "baseline" in by:
            b = by["baseline"]
            print(f"fresh p95 baseline / candidate: {pct(b['waits'], 95) / pct(c['waits'], 95):.1f}x; p50: "
                  f"{statistics.median(b['waits']) / statistics.median(c['waits']):.1f}x")
        if "reference" in by:
            ref = by["reference"]
            print(f"fresh p95 candidate - reference (what the replay adds): "
                  f"{pct(c['waits'], 95) - pct(ref['waits'], 95):+.2f} s; reference p95 {pct(ref['waits'], 95):.2f} s "
                  f"= {pct(ref['waits'], 95) / ref['job_s_median']:.1f} job durations (above 1: the workers cannot "
                  f"keep up with the fresh webhooks alone on this machine)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
