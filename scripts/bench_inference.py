"""Benchmark: preprocessing (fast batched path vs PIL reference) and model pairs/s (unfused vs fused).

Prints medians over ``--repeats`` runs, in one run:

* preprocessing pairs/s of the fast path (each frame once, OCR image once, plus the forward/backward
  batch build: ``torch.cat`` of both directions) and of the PIL reference doing the upstream work
  (6 transforms per pair: OCR image, frame1, frame2, in both directions), on ``--crop`` sized frames
  (default 1280x100), and their ratio; with ``torch.set_num_threads(1)`` (PIL is single-threaded:
  equal threads on both sides, i.e. per core);
* model pairs/s (a pair = forward + backward pass) for the LoRA model as loaded and for the fused one;
* end-to-end ``ModelPredictor.predict`` pairs/s;
* with CUDA also: fp16 autocast vs fp32 and a batch sweep (64..512 model samples) of the fused model;
  on CPU: bf16 autocast + channels_last (what ``precision=auto`` picks on AMX CPUs) vs fp32.

Weights are random (never downloaded); speed does not depend on them. Usage::

    .venv/bin/python scripts/bench_inference.py            # CPU: about 1-2 minutes
    .venv/bin/python scripts/bench_inference.py --device cuda
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
import torch
from PIL import Image

from boundaries.layout_config import LayoutConfig
from modal_gpu.fuse import fuse_model
from modal_gpu.model import build_model, randomize_for_tests_
from modal_gpu.model_predictor import ModelPredictor
from modal_gpu.preprocess import FramePreprocessor
from modal_gpu.preprocess_reference import reference_transform


def timed(fn, repeats: int, sync: bool) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs, after one warm-up run."""
    return timed_interleaved([fn], repeats, sync)[0]


def timed_interleaved(fns, repeats: int, sync: bool) -> list[float]:
    """Median seconds of each of ``fns``, run in turn ``repeats`` times (after one warm-up each)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            if sync:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if sync:
                torch.cuda.synchronize()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def synthetic_frames(n: int, width: int, height: int) -> np.ndarray:
    """``uint8 (n, height, width, 3)``: a dark background with bright text-like bars that change."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 40, (n, height, width, 3), dtype=np.uint8)
    for i in range(n):
        x0 = int(rng.integers(0, width // 2))
        frames[i, height // 3: 2 * height // 3, x0:x0 + width // 3] = 230
    return frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--crop", default="1280x100", help="frame size WxH in pixels")
    ap.add_argument("--frames", type=int, default=0, help="frames per fast-path call (default 64 CPU, 1024 CUDA)")
    ap.add_argument("--ref-pairs", type=int, default=6, help="pairs per PIL reference run")
    ap.add_argument("--model-pairs", type=int, default=0, help="pairs per model batch (default 32 CPU, 128 CUDA)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    width, height = (int(v) for v in args.crop.split("x"))
    n_frames = args.frames or (1024 if cuda else 64)
    model_pairs = args.model_pairs or (128 if cuda else 32)
    print(f"device={dev} torch={torch.__version__} threads={torch.get_num_threads()} crop={width}x{height} "
          f"repeats={args.repeats}" + (f" gpu={torch.cuda.get_device_name(dev)}" if cuda else ""))

    # --- preprocessing -----------------------------------------------------------------------------
    frames = synthetic_frames(n_frames, width, height)
    ocr_png = io.BytesIO()
    Image.fromarray(synthetic_frames(1, width, height)[0]).save(ocr_png, format="PNG")
    layout = LayoutConfig(1920, 1080, 320, 900, 320 + width, 900 + height, "center", ocr_png.getvalue())
    fast = FramePreprocessor(dev)
    ocr_img = Image.open(io.BytesIO(layout.ocr_visualization_png)).convert("RGB")

    out = torch.empty((n_frames, 3, 48, 480), device=dev)  # reused, as ModelPredictor.predict does

    def run_fast():
        fast(np.asarray(ocr_img)[None], "center")  # OCR image: once per video
        fast(frames, "center", out=out)
        a, b = out[:-1], out[1:]
        torch.cat([a, b]), torch.cat([b, a])  # the forward/backward batch build, counted

    def run_reference():
        for k in range(args.ref_pairs):
            for f1, f2 in ((frames[k], frames[k + 1]), (frames[k + 1], frames[k])):  # both directions
                reference_transform(ocr_img, "center")
                reference_transform(f1, "center")
                reference_transform(f2, "center")

    # Interleaved, so both see the same load on a shared machine; one thread each (PIL has one).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t_fast, t_ref = timed_interleaved([run_fast, run_reference], args.repeats, cuda)
    torch.set_num_threads(threads)
    fast_pps, ref_pps = (n_frames - 1) / t_fast, args.ref_pairs / t_ref
    print(f"preprocess fast path : {fast_pps:10.1f} pairs/s  ({n_frames} frames per call, "
          f"median {t_fast * 1e3:.1f} ms)")
    print(f"preprocess PIL ref   : {ref_pps:10.1f} pairs/s  (6 transforms per pair, median "
          f"{t_ref / args.ref_pairs * 1e3:.2f} ms per pair)")
    print(f"preprocess speed-up  : {fast_pps / ref_pps:10.1f} x  (1 thread each, batch build counted)")

    # --- model -------------------------------------------------------------------------------------
    model = randomize_for_tests_(build_model(), seed=0)
    fused = fuse_model(model)
    b = 2 * model_pairs
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(b, 3, 48, 480, generator=gen).to(dev) for _ in range(3)] + \
        [torch.rand(b, 6, generator=gen).to(dev)]

    def model_pps(m, dtype=None, batch=None) -> float:
        m = m.to(dev).eval()
        xs = inputs if batch is None else [t[:1].expand(batch, *t.shape[1:]).contiguous() for t in inputs]
        if cuda:
            m = m.to(memory_format=torch.channels_last)
            xs = [x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x for x in xs]

        def step():
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype or torch.float16,
                                                        enabled=cuda and dtype is not torch.float32):
                m(*xs)

        return xs[0].shape[0] / 2 / timed(step, args.repeats, cuda)

    p_unfused, p_fused = model_pps(model), model_pps(fused)
    print(f"model unfused (LoRA) : {p_unfused:10.1f} pairs/s  (batch {b} samples"
          + (", fp16 autocast, channels_last)" if cuda else ", fp32)"))
    print(f"model fused          : {p_fused:10.1f} pairs/s  ({p_fused / p_unfused:.2f}x unfused)")
    if not cuda:
        cl = fused.to(memory_format=torch.channels_last)
        xs_cl = [x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x for x in inputs]

        def step_bf16():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                cl(*xs_cl)

        p_bf16 = xs_cl[0].shape[0] / 2 / timed(step_bf16, args.repeats, False)
        print(f"model fused bf16 cl  : {p_bf16:10.1f} pairs/s  ({p_bf16 / p_fused:.2f}x fused fp32; "
              f"{torch.get_num_threads()} threads both)")
    if cuda:
        torch.backends.cudnn.benchmark = True
        print(f"model fused fp32     : {model_pps(fused, torch.float32):10.1f} pairs/s")
        print(f"model fused fp16     : {model_pps(fused, torch.float16):10.1f} pairs/s")
        print(f"model fused bf16     : {model_pps(fused, torch.bfloat16):10.1f} pairs/s")
        for batch in (64, 128, 256, 512):
            print(f"batch sweep {batch:4d}     : {model_pps(fused, torch.float16, batch):10.1f} pairs/s (fp16)")

    # --- end to end --------------------------------------------------------------------------------
    n_e2e = min(n_frames, 1025 if cuda else 5)
    predictor = ModelPredictor(fused, model_version="bench_00000000", device=dev, batch_size=b)
    t_e2e = timed(lambda: predictor.predict(frames[:n_e2e], layout), max(1, args.repeats // 2), cuda)
    print(f"predict end-to-end   : {(n_e2e - 1) / t_e2e:10.1f} pairs/s  ({n_e2e} frames, batch {b})")


if __name__ == "__main__":
    main()
