"""Single-thread throughput of the classical detector on caption bands (default 1280x100, issue 15).

Usage: ``.venv/bin/python scripts/bench_detector.py [--height 100] [--width 1280] [--window 256] [--repeats 5]``

Frames: a panning colour gradient with noise, a synthetic caption on half of the frames. Prints the
median pairs/s over ``repeats`` calls of ``predict`` on one window for the shipped detector and, in
the same run and interleaved, for the classical-v2 baseline (its parameters and its grey-image
code, :class:`BaselineV2`), their ratio, and MISSED when the shipped detector is under 500 pairs/s per core. Also the
peak RSS of this process. Pairs per CPU-second (process time) are printed too: on a loaded machine
wall-clock rates fall with the load, CPU-time rates much less.
Set OMP/OPENBLAS threads to 1 before numpy loads so the figure is per core.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from boundaries.layout_config import LayoutConfig  # noqa: E402
from modal_gpu import detector_features  # noqa: E402
from modal_gpu.detector import ClassicalDetector, DetectorParams  # noqa: E402

TARGET = 500


def make_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """``uint8 (n, h, w, 3)``: panning gradient + noise; white 2-px strokes on frames n/4..3n/4."""
    rng = np.random.default_rng(seed)
    x = np.arange(w)
    out = np.empty((n, h, w, 3), np.uint8)
    strokes = np.zeros((h, w), bool)
    for x0 in range(w // 5, 4 * w // 5, 12):
        strokes[h // 3: 2 * h // 3, x0:x0 + 2] = True
    for i in range(n):
        g = (60 + 120 * ((x + 5 * i) % w) / w)[None, :, None] + rng.normal(0, 5, (h, w, 3))
        out[i] = np.clip(g, 0, 255).astype(np.uint8)
        if n // 4 <= i < 3 * n // 4:
            out[i][strokes] = 250
    return out


def grey_v2(frames: np.ndarray, channel: str = "min") -> np.ndarray:
    """classical-v2's grey image, as it was: min(R, G, B), box-downsampled by a float64 mean."""
    w = np.minimum(np.minimum(frames[..., 0], frames[..., 1]), frames[..., 2])
    f = max(1, w.shape[1] // detector_features.WORK_HEIGHT, -(-w.shape[2] // detector_features.MAX_WORK_WIDTH))
    if f > 1:
        w = w[:, : w.shape[1] // f * f, : w.shape[2] // f * f]
        w = w.reshape(w.shape[0], w.shape[1] // f, f, w.shape[2] // f, f).mean(axis=(2, 4)).astype(np.uint8)
    return w


class BaselineV2(ClassicalDetector):
    """classical-v2 as it was: its parameters (min(R, G, B), no background removal, reveal 0) and its
    grey-image code (:func:`grey_v2`), swapped in for the duration of each call."""

    def __init__(self) -> None:
        super().__init__(DetectorParams(channel="min", bg_share=0.0, reveal=0.0))

    def predict(self, frames, layout):
        shipped = detector_features.grey
        detector_features.grey = grey_v2
        try:
            return super().predict(frames, layout)
        finally:
            detector_features.grey = shipped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=100)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    frames = make_frames(args.window, args.height, args.width)
    layout = LayoutConfig(frame_width=1280, frame_height=720, crop_left=0, crop_top=0, crop_right=args.width,
                          crop_bottom=args.height, anchor_type="center", ocr_visualization_png=b"")
    dets = {"shipped": ClassicalDetector(), "baseline classical-v2": BaselineV2()}
    rates: dict[str, list[float]] = {k: [] for k in dets}
    cpu_rates: dict[str, list[float]] = {k: [] for k in dets}
    for det in dets.values():
        det.predict(frames, layout)  # warm-up
    for _ in range(args.repeats):
        for name, det in dets.items():
            t0, c0 = time.perf_counter(), time.process_time()
            det.predict(frames, layout)
            rates[name].append((args.window - 1) / (time.perf_counter() - t0))
            cpu_rates[name].append((args.window - 1) / (time.process_time() - c0))
    for name, r in rates.items():
        print(f"{name}: {args.width}x{args.height} bands, window {args.window}: "
              f"median {np.median(r):.0f} pairs/s single thread (min {min(r):.0f}, max {max(r):.0f}, "
              f"{args.repeats} runs); per CPU-second {np.median(cpu_rates[name]):.0f} pairs/s")
    shipped, base = (float(np.median(r)) for r in rates.values())
    print(f"ratio shipped/baseline {shipped / base:.2f}; target >= {TARGET} pairs/s per core: "
          f"{'met' if shipped >= TARGET else 'MISSED'}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.3f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
