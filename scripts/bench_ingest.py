"""Ingest benchmark: today's ingest against the first release's, side by side in one run.

Source: the popeye burned-caption clip (60 s at 10 fps, 720x538 H.264) looped by stream copy (no
re-encode, PyAV remux with shifted timestamps) to ``--minutes`` (default 20: 12,000 frames at
10 fps), cached under ``.boundaries/bench/ingest``. Crop: the main job's ``0.05,0.78,0.95,0.99``.

Baseline: ``boundaries/ingest.py`` and ``boundaries/frames/writer.py`` as they were at
``--baseline-ref`` (default: main when issue 13 was started), loaded from git into temporary
modules. Both sides run the whole ingest (decode, resample, crop, encode, upload to a LocalStore,
layout.db) in this process, alternately, pinned to the same ``--cores`` CPUs (default 2; both
sides encode with as many chunk threads as there are cores: the baseline's default was 2). Each
side runs ``--repeats`` times (default 3); the medians of frames/s are compared. The target is a
ratio >= 3 (issue 13); the line ends with MISSED when it is not reached.

Usage: ``.venv/bin/python scripts/bench_ingest.py [--minutes 20] [--repeats 3] [--cores 2]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from boundaries.ingest import ingest_video  # noqa: E402
from boundaries.storage.local import LocalStore  # noqa: E402
from config.settings import Settings  # noqa: E402

BASELINE_REF = "70b17f7bcf272ee5064f18ef368b7a186621951d"  # main at the start of issue 13
SOURCE = Path("derived/popeye_burn10/T00-1_p3_srtburn_10fps.mp4")
CROP = (0.05, 0.78, 0.95, 0.99)
CACHE = REPO / ".boundaries" / "bench" / "ingest"
TARGET = 3.0


def load_baseline(ref: str):
    """The baseline's ``ingest_video``, its writer swapped in (both read from git at ``ref``)."""
    def show(path: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:{path}"], check=True,
                              capture_output=True, text=True).stdout

    mods = {}
    for name, path, patch in [
        ("bench_baseline_writer", "boundaries/frames/writer.py", None),
        ("bench_baseline_ingest", "boundaries/ingest.py",
         ("from boundaries.frames.writer import ChunkWriter", "from bench_baseline_writer import ChunkWriter")),
    ]:
        src = show(path)
        if patch:
            if patch[0] not in src:
                raise SystemExit(f"baseline {path} at {ref} has no {patch[0]!r}")
            src = src.replace(*patch)
        mod = types.ModuleType(name)
        sys.modules[name] = mod
        exec(compile(src, f"{ref[:8]}:{path}", "exec"), mod.__dict__)  # noqa: S102 - our own file from git
        mods[name] = mod
    return mods["bench_baseline_ingest"].ingest_video


def looped_source(src: Path, minutes: float) -> tuple[Path, int]:
    """``src`` repeated (stream copy) to ``minutes``; returns (path, expected frames at 10 fps)."""
    import av

    frames = round(minutes * 60 * 10)
    out = CACHE / f"popeye_loop_{frames}.mp4"
    if out.exists():
        return out, frames
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.mp4")
    with av.open(str(src)) as probe:
        stream = probe.streams.video[0]
        packets = [(p.pts, p.dts, p.is_keyframe, bytes(p)) for p in probe.demux(stream) if p.size]
        tb, length = stream.time_base, stream.duration or max(p[0] for p in packets) + packets[1][0] - packets[0][0]
        per_loop = 600  # frames of the 10 fps source
        with av.open(str(tmp), "w") as dst:
            ost = dst.add_stream_from_template(stream)
            loops = -(-frames // per_loop)
            written = 0
            for k in range(loops):
                for pts, dts, key, data in packets:
                    if written >= frames:
                        break
                    pkt = av.Packet(data)
                    pkt.pts, pkt.dts = pts + k * length, dts + k * length
                    pkt.time_base, pkt.stream = tb, ost
                    if key:
                        pkt.is_keyframe = True
                    dst.mux(pkt)
                    written += 1
    tmp.rename(out)
    return out, frames


def run_once(fn, video: Path, settings: Settings) -> tuple[float, float, int]:
    """(wall seconds, process CPU seconds incl. FFmpeg's and the encoders' threads, frames stored)."""
    root = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        res = fn(video, CROP, "center", LocalStore(root), settings, str(uuid.uuid4()), str(uuid.uuid4()), 1)
        return time.perf_counter() - t0, time.process_time() - c0, res.total_frames
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--baseline-ref", default=BASELINE_REF)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "real")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))[: args.cores]
    os.sched_setaffinity(0, cpus)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings only
    old = load_baseline(args.baseline_ref)
    video, frames = looped_source(args.data / SOURCE, args.minutes)
    settings = Settings()
    print(f"source {video.name}: {frames} frames expected; cores {cpus}; baseline {args.baseline_ref[:12]}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    times: dict[str, list[float]] = {"old": [], "new": []}
    cpu: dict[str, list[float]] = {"old": [], "new": []}
    for r in range(args.repeats):
        for name, fn in (("old", old), ("new", ingest_video)):
            secs, cpu_s, n = run_once(fn, video, settings)
            if n != frames:
                raise SystemExit(f"{name} ingest stored {n} frames, expected {frames}")
            times[name].append(secs)
            cpu[name].append(cpu_s)
            print(f"  run {r + 1} {name}: {secs:7.1f} s  {n / secs:6.1f} frames/s  CPU {cpu_s:7.1f} s  "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["old"] / med["new"]
    print(f"median ingest {frames} frames on {len(cpus)} cores: old {frames / med['old']:.1f} frames/s "
          f"({med['old']:.1f} s), new {frames / med['new']:.1f} frames/s ({med['new']:.1f} s), "
          f"ratio {ratio:.2f}x (target >= {TARGET:g}x){'' if ratio >= TARGET else '  MISSED'}")
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"median CPU per frame: old {1000 * cmed['old'] / frames:.2f} ms, new {1000 * cmed['new'] / frames:.2f} ms, "
          f"ratio {cmed['old'] / cmed['new']:.2f}x (other processes on the machine slow wall time, not CPU time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
