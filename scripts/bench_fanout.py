"""Fan-out benchmark: a 36,000-frame video through the real pipeline (worker/pipeline.py: discovery,
planning, fan-out, shard-output validation, aggregation into the results database, registry) with a
*simulated* GPU: each shard sleeps ``pairs x cost`` and writes a real shard output to a LocalStore.

For 1, 2, 4, 8 concurrent runners it prints wall time against the ideal ``pairs x cost / N`` and the
schedule-aware ideal ``ceil(shards / N) x shard_pairs x cost``, and the worker's peak traced Python
memory (tracemalloc, numpy included) per job; ru_maxrss at the end.

Registry: the real Registry on PostgreSQL (``--dsn``, default postgres@127.0.0.1:5432) in a fresh
schema that is dropped at the end. Frames: 16x8 px VP9 chunks of 36,000 frames, written once and
cached under ``.boundaries/bench/fanout`` (delete it to rebuild).

Usage: ``.venv/bin/python scripts/bench_fanout.py [--cost-ms 1.0] [--shard-pairs 1000] [--runners 1 2 4 8]``
"""

from __future__ import annotations

import argparse
import io
import json
import math
import resource
import sys
import time
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from boundaries.events import JobEvent  # noqa: E402
from boundaries.frames.keys import frames_prefix, layout_db_key  # noqa: E402
from boundaries.frames.layoutdb import build_layout_db  # noqa: E402
from boundaries.frames.writer import ChunkWriter  # noqa: E402
from boundaries.layout_config import LayoutConfig  # noqa: E402
from boundaries.registry.db import Database  # noqa: E402
from boundaries.registry.registry import Registry  # noqa: E402
from boundaries.results_db import read_results_db  # noqa: E402
from boundaries.shards import ShardRequest, ShardSummary, encode_output  # noqa: E402
from boundaries.storage.local import LocalStore  # noqa: E402
from config.settings import Settings  # noqa: E402
from worker.pipeline import Deps, process_video  # noqa: E402
from worker.runners.base import ShardError, shard_error_from  # noqa: E402

FRAMES = 36_000
W, H = 16, 8
TENANT = str(uuid.uuid5(uuid.NAMESPACE_URL, "bench-fanout-tenant"))
VIDEO = str(uuid.uuid5(uuid.NAMESPACE_URL, "bench-fanout-video"))
VERSION = 1
CACHE = REPO / ".boundaries" / "bench" / "fanout"
READY_KEY = "bench/ready.json"


def build_video(store: LocalStore, settings: Settings) -> float:
    """Write (once) 36,000 tiny frames and a layout.db; returns seconds spent (0 when cached)."""
    if store.exists(READY_KEY) and json.loads(store.get_bytes(READY_KEY)).get("frames") == FRAMES:
        return 0.0
    from PIL import Image

    t0 = time.perf_counter()
    prefix = frames_prefix(settings.frames_prefix_template, TENANT, VIDEO, VERSION)
    with ChunkWriter(store, prefix, W, H) as w:
        for i in range(FRAMES):
            img = np.full((H, W, 3), 16, np.uint8)
            x = (i // 50) % 10
            img[2:6, x:x + 6] = 230  # a 'caption' that moves every 5 s
            w.write(img)
    png = io.BytesIO()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(png, format="PNG")
    cfg = LayoutConfig(frame_width=W, frame_height=32, crop_left=0, crop_top=24, crop_right=W, crop_bottom=32,
                       anchor_type="center", ocr_visualization_png=png.getvalue())
    store.put_bytes(layout_db_key(settings.layout_db_key_template, TENANT, VIDEO), build_layout_db(cfg))
    store.put_bytes(READY_KEY, json.dumps({"frames": FRAMES}).encode())
    return time.perf_counter() - t0


class SimulatedGpuRunner:
    """Runs shards concurrently in ``concurrency`` threads; a shard costs ``cost_s`` per pair (sleep) and
    writes a real shard output (every pair 'same' at 0.9) — the GPU is the only thing simulated."""

    def __init__(self, store: LocalStore, concurrency: int, cost_s: float):
        self.store, self.concurrency, self.cost_s = store, concurrency, cost_s
        self.map_s = 0.0

    def _shard(self, req: ShardRequest) -> ShardSummary:
        t0 = time.perf_counter()
        time.sleep(req.pairs * self.cost_s)
        probs = np.tile(np.array([0.9, 0.04, 0.02, 0.02, 0.02], np.float32), (req.pairs, 1))
        self.store.put_bytes(req.output_key, encode_output(req.first_pair, req.end_pair, req.model_version, probs,
                                                           probs, np.full(req.pairs, self.cost_s * 1e3, np.float32)))
        s = time.perf_counter() - t0
        return ShardSummary(shard_id=req.shard_id, pairs=req.pairs, seconds=s, pairs_per_s=req.pairs / s,
                            decode_s=0.0, model_s=req.pairs * self.cost_s, output_key=req.output_key,
                            device="simulated")

    def map(self, requests: list[ShardRequest]) -> list[ShardSummary | ShardError]:
        if not requests:
            return []
        t0 = time.perf_counter()
        out: list[ShardSummary | ShardError] = []
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(self._shard, r) for r in requests]
            for req, fut in zip(requests, futures, strict=True):
                try:
                    out.append(fut.result())
                except Exception as e:  # noqa: BLE001 — same contract as the real runners
                    out.append(shard_error_from(req.shard_id, e))
        self.map_s = time.perf_counter() - t0
        return out

    def close(self) -> None:
        pass


def run_once(n: int, args, store: LocalStore, registry: Registry, settings: Settings, *, trace: bool) -> dict:
    runner = SimulatedGpuRunner(store, n, args.cost_ms / 1000)
    deps = Deps(settings, registry, store, runner)
    event = JobEvent(video_id=VIDEO, tenant_id=TENANT, cropped_frames_version=VERSION,
                     model_version=f"sim-n{n}-{uuid.uuid4().hex[:8]}", source="cli")
    job_id, _ = registry.jobs.record(event)
    attempt = registry.jobs.claim(job_id)
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    outcome = process_video(event, deps, job_id=job_id, attempt=attempt)
    wall = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    results = read_results_db(store.get_bytes(outcome.results_key))
    pairs = FRAMES - 1
    if not np.array_equal(results["frame1_index"], np.arange(pairs)):  # every pair exactly once, in order
        raise RuntimeError(f"results database has {len(results['frame1_index'])} rows, expected pairs 0..{pairs - 1}")
    shards = math.ceil(pairs / settings.shard_pairs)
    ideal = pairs * args.cost_ms / 1000 / n
    sched = math.ceil(shards / n) * settings.shard_pairs * args.cost_ms / 1000
    row = {"runners": n, "wall_s": wall, "map_s": runner.map_s, "ideal_s": ideal, "sched_ideal_s": sched,
           "wall_over_ideal": wall / ideal, "non_map_s": wall - runner.map_s,
           "peak_traced_mib": peak / 2**20 if trace else None,
           "pairs": outcome.total_pairs, "shards": outcome.shards_total, "rows": len(results["frame1_index"])}
    for prefix in ("boundary_runs/", "videos/"):  # keep the cache small; the next run uses a new model_version
        for k in list(store.list_keys(prefix)):
            store.delete(k)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cost-ms", type=float, default=1.0, help="simulated GPU cost per pair, milliseconds")
    p.add_argument("--shard-pairs", type=int, default=1000)
    p.add_argument("--runners", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = p.parse_args(argv)

    import psycopg

    from config.logging import configure_logging

    configure_logging("WARNING")
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    settings = Settings(storage_backend="local", local_store_dir=CACHE, shard_pairs=args.shard_pairs,
                       db_schema=schema)
    store = LocalStore(CACHE)
    built = build_video(store, settings)
    how = f"built in {built:.1f} s" if built else "cached"
    print(f"video: {FRAMES} frames of {W}x{H} px ({how}); "
          f"{FRAMES - 1} pairs, shards of {args.shard_pairs}, simulated cost {args.cost_ms} ms/pair")
    db = Database(args.dsn, schema)
    rows = []
    try:
        db.migrate()
        registry = Registry(db)
        for n in args.runners:  # timings without tracemalloc (it slows allocation-heavy aggregation ~2x)
            rows.append(run_once(n, args, store, registry, settings, trace=False))
        traced = run_once(max(args.runners), args, store, registry, settings, trace=True)
    finally:
        db.close()
        with psycopg.connect(args.dsn, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    print(f"{'N':>3} {'wall s':>8} {'ideal s':>8} {'wall/ideal':>10} {'sched ideal':>11} {'map s':>7} "
          f"{'other s':>8} {'rows':>6}")
    for r in rows:
        print(f"{r['runners']:>3} {r['wall_s']:>8.2f} {r['ideal_s']:>8.2f} {r['wall_over_ideal']:>10.2f} "
              f"{r['sched_ideal_s']:>11.2f} {r['map_s']:>7.2f} {r['non_map_s']:>8.2f} {r['rows']:>6}")
    print(f"peak traced Python memory of one job (N={traced['runners']}, tracemalloc): "
          f"{traced['peak_traced_mib']:.1f} MiB; ru_maxrss (whole process): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    (CACHE / "last_run.json").write_text(json.dumps({"runs": rows, "traced": traced}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
