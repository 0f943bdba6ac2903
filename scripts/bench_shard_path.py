"""Benchmark: the whole shard path (chunk read + VP9 decode + preprocessing + model, both directions)
of this tree against a baseline tree (default: the main before issue 16), side by side in one run.

The baseline's ``boundaries``/``modal_gpu``/``config`` packages are extracted with ``git archive`` into
a temporary folder; every measurement runs :func:`modal_gpu.shard.predict_range` in a fresh child
process importing one tree, with the same CPU set and the same ``torch.set_num_threads``, on the same
synthetic 1280x100 video in a local store (:mod:`shard_bench_data`). Children run interleaved
(baseline, new, baseline, new, ...) so both see the same machine load; medians are printed, pairs/s
per core (divided by the CPUs of the set), pairs per CPU-second of the child (``process_time``:
steadier than wall time on a shared machine), the new/baseline ratios and MISSED when either is below
``--target``. Each child warms up on a short range first (oneDNN primitives, preprocessing plans).
Weights are random (``torch.manual_seed(0)`` + ``randomize_for_tests_``, seed 0), identical in both
trees; the model agreement (argmax, largest probability difference) of each variant against the
baseline is printed too.

Usage::

    .venv/bin/python scripts/bench_shard_path.py                   # ~3-5 min on 2 busy cores
    .venv/bin/python scripts/bench_shard_path.py --cpus 0 --pairs 256   # one core
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE_REF = "70b17f7"
"""main just before issue 16 (GPU shard path)."""
VARIANTS = {
    # name: (tree, predictor, precision)
    "baseline model": ("base", "model", None),
    "new model (auto)": ("new", "model", "auto"),
    "new model fp32": ("new", "model", "fp32"),
    "baseline detector": ("base", "detector", None),
    "new detector": ("new", "detector", None),
}


def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, args.tree)
    sys.path.insert(1, str(ROOT / "scripts"))
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    import numpy as np
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    from shard_bench_data import synthetic_layout

    from boundaries.storage.local import LocalStore
    from modal_gpu.shard import predict_range

    if args.predictor == "model":
        import torch

        torch.set_num_threads(args.threads)
        torch.manual_seed(0)  # build_model's initial weights (randomize_for_tests_ sets only some)
        from modal_gpu.fuse import fuse_model
        from modal_gpu.model import build_model, randomize_for_tests_
        from modal_gpu.model_predictor import ModelPredictor

        kw = {}
        if args.precision is not None:
            from modal_gpu.inference_options import InferenceOptions

            kw["options"] = InferenceOptions(precision=args.precision)
        predictor = ModelPredictor(fuse_model(randomize_for_tests_(build_model(), seed=0)),
                                   model_version="bench_00000000", device="cpu", batch_size=args.batch, **kw)
    else:
        from modal_gpu.detector import ClassicalDetector

        predictor = ClassicalDetector()
    store, layout = LocalStore(args.store), synthetic_layout()
    predict_range(store, args.prefix, layout, 0, min(args.pairs, 64), predictor)  # warm-up
    t, c = time.perf_counter(), time.process_time()
    fwd, bwd = predict_range(store, args.prefix, layout, 0, args.pairs, predictor)
    seconds, cpu_s = time.perf_counter() - t, time.process_time() - c
    np.savez(args.out, fwd=fwd, bwd=bwd)
    print(json.dumps({"seconds": seconds, "cpu_s": cpu_s}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-ref", default=BASELINE_REF)
    ap.add_argument("--pairs", type=int, default=384, help="pairs per timed run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpus", default="", help="CPU set for every child, e.g. '0' (default: this process's)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads both sides (default: CPUs in the set)")
    ap.add_argument("--batch", type=int, default=64, help="model samples per step (COMPAT.md default 64)")
    ap.add_argument("--target", type=float, default=2.0, help="new/baseline model pairs/s per core")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    # child mode
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tree", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    ap.add_argument("--predictor", help=argparse.SUPPRESS)
    ap.add_argument("--precision", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    sys.path.insert(0, str(ROOT))
    sys.path.insert(1, str(ROOT / "scripts"))
    import numpy as np
    from shard_bench_data import write_video

    from boundaries.storage.local import LocalStore

    cpus = sorted(int(c) for c in args.cpus.split(",")) if args.cpus else sorted(os.sched_getaffinity(0))
    threads = args.threads or len(cpus)
    names = [v for v in args.variants.split(",") if v]
    with tempfile.TemporaryDirectory(prefix="bench_shard_") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline_ref], check=True,
                             capture_output=True, text=True).stdout.strip()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "boundaries", "modal_gpu", "config"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        store_dir, prefix = Path(tmp) / "store", "bench/video/cropped_frames_v1/"
        write_video(LocalStore(store_dir), prefix, args.pairs + 1)
        load = os.getloadavg()
        print(f"baseline {args.baseline_ref} ({sha}) vs this tree; cpus={cpus} torch threads={threads} both sides; "
              f"{args.pairs} pairs of 1280x100 per run, batch {args.batch} samples, {args.repeats} interleaved "
              f"repeats; load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        times: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        outs = {n: Path(tmp) / f"out_{i}.npz" for i, n in enumerate(names)}
        for _ in range(args.repeats):
            for name in names:
                tree, pred, prec = VARIANTS[name]
                cmd = [sys.executable, __file__, "--child", "--tree", str(base if tree == "base" else ROOT),
                       "--store", str(store_dir), "--prefix", prefix, "--predictor", pred, "--pairs", str(args.pairs),
                       "--threads", str(threads), "--batch", str(args.batch), "--out", str(outs[name]),
                       "--cpus", ",".join(map(str, cpus))]
                if prec:
                    cmd += ["--precision", prec]
                res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
                if res.returncode:
                    sys.exit(f"{name} failed:\n{res.stderr[-3000:]}")
                got = json.loads(res.stdout.strip().splitlines()[-1])
                times[name].append(got["seconds"])
                cpu[name].append(got["cpu_s"])
                print(f"  {name}: {got['seconds']:.1f} s wall, {got['cpu_s']:.1f} s CPU", flush=True)
        load = os.getloadavg()
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        rate = {n: args.pairs / statistics.median(t) for n, t in times.items()}
        per_cpu_s = {n: args.pairs / statistics.median(t) for n, t in cpu.items()}
        print(f"{'variant':20s} {'pairs/s':>9s} {'per core':>9s} {'pairs/CPU-s':>12s}  runs (s wall)")
        for n in names:
            print(f"{n:20s} {rate[n]:9.1f} {rate[n] / len(cpus):9.1f} {per_cpu_s[n]:12.1f}  "
                  f"{', '.join(f'{t:.1f}' for t in times[n])}")
        for pred in ("model", "detector"):
            ref = next((n for n in names if VARIANTS[n][:2] == ("base", pred)), None)
            if ref is None:
                continue
            want = np.load(outs[ref])
            for n in names:
                if VARIANTS[n][1] != pred or n == ref:
                    continue
                got = np.load(outs[n])
                agree = np.mean(np.concatenate([got[k].argmax(1) == want[k].argmax(1) for k in ("fwd", "bwd")]))
                diff = max(float(np.abs(got[k] - want[k]).max()) for k in ("fwd", "bwd"))
                ratio = rate[n] / rate[ref]
                cpu_ratio = per_cpu_s[n] / per_cpu_s[ref]
                verdict = "" if pred != "model" or "auto" not in n else (
                    "  OK" if min(ratio, cpu_ratio) >= args.target else f"  MISSED (target {args.target}x)")
                print(f"{n:20s} {ratio:5.2f}x {ref} per core (wall), {cpu_ratio:5.2f}x per CPU-second; "
                      f"argmax agreement {agree * 100:.2f} %, max prob diff {diff:.5f}{verdict}")


if __name__ == "__main__":
    main()
