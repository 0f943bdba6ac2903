"""Benchmark: read a 36,000-frame video's chunks from an S3 API (moto server) into decoded arrays.

A synthetic 1280x100 caption band (panning textured scenery, light noise, bright text-like
strokes that change every 3 s) is encoded once as a full 32-frame chunk plus the short tail chunk of each
level, then uploaded under every chunk key of a ``--frames`` video (1,126 objects for 36,000
frames). Timed with ``time.perf_counter``:

* discovery: paginated listing + ``total_frames`` (decodes the last chunk of each level);
* a full sequential read with :func:`iter_frames` (window 256) over every frame;
* ``--repeats`` shard-sized reads of 2,000 frames at random offsets (median reported).

Peak memory: ``ru_maxrss`` of this process (moto runs in a child process, so its object store
is not counted) and the tracemalloc peak of Python/numpy allocations during the full read.

Baseline in the same run: decode scaling. A ``--scaling-frames`` range is read from a local
directory store (no HTTP server competing for the CPUs) with 1 decode worker (the baseline) and with
2 (and ``--workers``), interleaved ``--scaling-repeats`` times; medians, frames/s per worker and
the 1 -> 2 ratio are printed, MISSED below 1.7x (issue 16). ``--scaling-only`` skips the S3 part.

Usage: ``.venv/bin/python scripts/bench_frame_read.py [--frames 36000] [--workers N] [--scaling-only]``
(``--workers`` defaults to the decode workers a container would use: its CPU count).
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boundaries.frames.keys import chunk_key  # noqa: E402
from boundaries.frames.layout import CHUNK_FRAMES, LEVELS, all_chunks, count_in_level  # noqa: E402
from boundaries.frames.reader import (  # noqa: E402
    default_decode_workers,
    discover_chunks,
    iter_frames,
    read_frames,
)
from boundaries.frames.writer import encode_chunk  # noqa: E402
from boundaries.storage.s3 import S3Store  # noqa: E402

W, H = 1280, 100


def band(i: int, rng: np.random.Generator) -> np.ndarray:
    """Panning textured scenery, light noise, and bright glyph-like strokes changing every 3 s."""
    yy, xx = np.mgrid[0:H, 0:W]
    bg = 70 + 45 * np.sin((xx + 4 * i) / 23.0) * np.cos(yy / 11.0 + i / 9.0)
    f = np.clip(np.stack([bg, bg + 12, bg - 12], -1) + rng.normal(0, 3, (H, W, 3)), 0, 255).astype(np.uint8)
    cue = np.random.default_rng(i // 30)
    for _ in range(cue.integers(25, 45)):
        x, y = int(cue.integers(200, 1050)), int(cue.integers(25, 65))
        f[y:y + int(cue.integers(8, 25)), x:x + int(cue.integers(3, 14))] = 235
    return f


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("moto_server did not start")


def decode_scaling(args) -> None:
    """1 decode worker (baseline) vs 2 and ``--workers``, interleaved, on a local store."""
    import tempfile

    from boundaries.storage.local import LocalStore

    counts = sorted({1, 2, args.workers})
    with tempfile.TemporaryDirectory(prefix="bench_decode_") as tmp:
        store, prefix = LocalStore(tmp), "b/v/cropped_frames_v1/"
        rng = np.random.default_rng(0)
        full = encode_chunk([band(i, rng) for i in range(CHUNK_FRAMES)], W, H)
        n = args.scaling_frames
        for r in all_chunks(n):
            store.put_bytes(chunk_key(prefix, r), full)  # every chunk full: frames past n are never read
        index = discover_chunks(store, prefix)
        load0 = os.getloadavg()
        times: dict[int, list[float]] = {c: [] for c in counts}
        for rep in range(args.scaling_repeats + 1):  # the first round warms up and is dropped
            for c in counts:
                t = time.perf_counter()
                for _ in iter_frames(store, prefix, 0, n - 1, index=index, max_workers=c):
                    pass
                if rep:
                    times[c].append(time.perf_counter() - t)
        load1 = os.getloadavg()
    rate = {c: n / statistics.median(t) for c, t in times.items()}
    print(f"decode scaling ({n} frames {W}x{H}, local store, {args.scaling_repeats} interleaved repeats, "
          f"{len(os.sched_getaffinity(0))} CPUs; load average {load0[0]:.2f} before, {load1[0]:.2f} after):")
    for c in counts:
        print(f"  {c} worker(s): median {rate[c]:7.0f} frames/s = {rate[c] / c:6.0f} per worker  "
              f"(all: {', '.join(f'{n / t:.0f}' for t in times[c])})")
    ratio = rate[2] / rate[1]
    print(f"  1 -> 2 workers: {ratio:.2f}x " + ("OK" if ratio >= 1.7 else "MISSED (target >= 1.7x)"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=36_000)
    ap.add_argument("--workers", type=int, default=default_decode_workers())
    ap.add_argument("--scaling-frames", type=int, default=1024)
    ap.add_argument("--scaling-repeats", type=int, default=5)
    ap.add_argument("--scaling-only", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--window", type=int, default=256)
    args = ap.parse_args()

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))

    decode_scaling(args)
    if args.scaling_only:
        return
    proc, endpoint = start_moto()
    try:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        store = S3Store(bucket, endpoint_url=endpoint)
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        frames = [band(i, rng) for i in range(CHUNK_FRAMES)]
        full = encode_chunk(frames, W, H)
        tails = {}
        for lvl in LEVELS:
            n = count_in_level(lvl, args.frames) % CHUNK_FRAMES
            tails[lvl] = encode_chunk(frames[:n], W, H) if n else full
        refs = all_chunks(args.frames)
        last = {lvl: max(r for r in refs if r.level == lvl) for lvl in LEVELS}
        prefix = f"{uuid.uuid4()}/{uuid.uuid4()}/cropped_frames_v1/"
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda r: store.put_bytes(chunk_key(prefix, r), tails[r.level] if r == last[r.level]
                                                    else full), refs))
        print(f"setup: {len(refs)} chunks ({len(full) / 1024:.0f} KiB each) uploaded in "
              f"{time.perf_counter() - t0:.1f} s")

        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        index = discover_chunks(store, prefix)
        total = index.total_frames(store)
        t_disc = time.perf_counter() - t
        assert total == args.frames, (total, args.frames)
        print(f"discovery: {len(index.keys)} chunks, {total} frames in {t_disc:.2f} s")

        tracemalloc.start()
        t = time.perf_counter()
        n = 0
        checksum = 0
        for batch in iter_frames(store, prefix, 0, total - 1, window=args.window, index=index,
                                 max_workers=args.workers):
            n += len(batch.indices)
            checksum += int(batch.frames[:, 50, 640, 0].sum())
        t_full = time.perf_counter() - t
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"full read: {n} frames in {t_full:.1f} s = {n / t_full:.0f} frames/s "
              f"({n * W * H * 3 / t_full / 1e6:.0f} MB/s decoded RGB)")
        print(f"peak memory: ru_maxrss {rss1 / 1024:.0f} MiB (before read {rss0 / 1024:.0f} MiB); "
              f"tracemalloc peak {traced_peak / 2**20:.0f} MiB; whole video would be "
              f"{total * W * H * 3 / 2**30:.1f} GiB")

        shard = 2000
        rates = []
        for _ in range(args.repeats):
            a = int(rng.integers(0, total - shard))
            t = time.perf_counter()
            b = read_frames(store, prefix, a, a + shard - 1, index=index, max_workers=args.workers)
            rates.append(len(b.indices) / (time.perf_counter() - t))
            del b
        print(f"shard read ({shard} frames, read_frames): median {statistics.median(rates):.0f} frames/s "
              f"over {args.repeats} (all: {', '.join(f'{r:.0f}' for r in rates)})")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
