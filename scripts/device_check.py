"""One device run: facts, correctness and throughput of the GPU shard path, printed as one table.

Sections (rows of one ``rich`` table):

* device: torch/CUDA/cuDNN versions, GPU name and memory, CPUs, decode workers, native CPU bf16,
  PyAV hardware decoders;
* correctness on real frames (caption band of ``derived/popeye_burn10`` from the shared real data;
  synthetic frames when it is absent, said in the row): device preprocessing vs the PIL reference
  (grey levels, target <= 1), the model's fp32 / fp16 / bf16 on the device vs fp32 on the CPU (argmax
  agreement, target >= 99.9 %, and the largest probability difference), NVDEC vs CPU decode of one
  chunk (grey levels, target <= 2; "cpu fallback" where there is no NVDEC);
* throughput in pairs/s at each ``--batches`` size (model samples per step): decode only
  (:func:`iter_frames` of a synthetic 1280x100 video), model only (pair build + forward, preprocessed
  inputs) and the whole shard path (:func:`modal_gpu.shard.predict_range`: read, decode,
  pinned copy, preprocessing, model); peak GPU memory; the shard size that settings
  ``shard_target_s`` gives at the measured rate; on CUDA the 3000 pairs/s goal.

A missed correctness target prints MISSED and exits 1; a missed speed goal prints MISSED only.
Weights are random (seeded) unless ``--checkpoint``. Usage::

    scripts/device_check                    # on a GPU machine, under 5 minutes
    scripts/device_check --cpu --small      # CPU, seconds (tests/integration/test_device_check.py)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "scripts"))

import structlog  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from shard_bench_data import synthetic_layout, write_video  # noqa: E402

from boundaries.frames.reader import _decode, default_decode_workers, discover_chunks, iter_frames  # noqa: E402
from boundaries.layout_config import LayoutConfig  # noqa: E402
from boundaries.shards import sized_shard_pairs  # noqa: E402
from boundaries.storage.local import LocalStore  # noqa: E402
from config.settings import Settings  # noqa: E402
from modal_gpu.fuse import fuse_model  # noqa: E402
from modal_gpu.inference_options import InferenceOptions, cpu_has_native_bf16  # noqa: E402
from modal_gpu.model import build_model, randomize_for_tests_  # noqa: E402
from modal_gpu.model_predictor import ModelPredictor  # noqa: E402
from modal_gpu.preprocess import FramePreprocessor  # noqa: E402
from modal_gpu.preprocess_reference import IMAGENET_STD, reference_transform  # noqa: E402
from modal_gpu.shard import predict_range  # noqa: E402

GOAL_PAIRS_PER_S = 3000.0
"""Issue 16: whole shard path per container on an H200-class GPU."""


def real_dir(arg: str | None) -> Path | None:
    cands = [Path(arg)] if arg else []
    if os.environ.get("BOUNDARIES_SHARED_DIR"):
        cands.append(Path(os.environ["BOUNDARIES_SHARED_DIR"]) / "data/real")
    cands += [ROOT.parent / "shared/data/real", ROOT / "shared/data/real", Path("/work/shared/data/real")]
    return next((c for c in cands if (c / "derived/popeye_burn10").is_dir()), None)


def real_frames(n: int, real: Path | None) -> tuple[np.ndarray, LayoutConfig, str]:
    """``n`` caption-band crops (rows 440..537 of the 720x538 burned-in Popeye video), and a layout."""
    import io

    import av
    from PIL import Image

    if real is None:
        from shard_bench_data import band

        return np.stack([band(i) for i in range(n)]), synthetic_layout(), "synthetic (no real data found)"
    frames = []
    with av.open(str(real / "derived/popeye_burn10/T00-1_p3_srtburn_10fps.mp4")) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 7 == 0:  # spread over the video: captions on and off
                frames.append(f.to_ndarray(format="rgb24")[440:538])
            if len(frames) == n:
                break
    png = io.BytesIO()
    Image.fromarray(frames[0]).save(png, format="PNG")
    return np.stack(frames), LayoutConfig(720, 538, 0, 440, 720, 538, "center", png.getvalue()), \
        f"real: popeye_burn10 T00-1, {n} frames 720x98"


def timed(fn, sync: bool, repeats: int = 3) -> float:
    """Median seconds of ``fn()`` after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return float(np.median(out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="run on the CPU even when CUDA is present")
    ap.add_argument("--small", action="store_true", help="small sizes (seconds; the test suite's run)")
    ap.add_argument("--batches", default="", help="model samples per step, comma separated (default 64,256,512)")
    ap.add_argument("--pairs", type=int, default=0, help="pairs per whole-shard-path run (default 4096; small 24)")
    ap.add_argument("--checkpoint", help="a users' checkpoint (default: random seeded weights)")
    ap.add_argument("--real", help="folder of the shared real data (default: found beside the checkout)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--cuda-graphs", action="store_true")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    cuda = torch.cuda.is_available() and not args.cpu
    dev = torch.device("cuda" if cuda else "cpu")
    batches = [int(b) for b in args.batches.split(",")] if args.batches else ([8] if args.small else [64, 256, 512])
    pairs = args.pairs or (8 if args.small else 4096)
    n_real = 5 if args.small else 65
    repeats = 1 if args.small else 3
    settings = Settings()
    rows: list[tuple[str, str, str, str]] = []
    failed = False

    def row(section: str, item: str, value: str, verdict: str = "") -> None:
        rows.append((section, item, value, verdict))

    # --- device facts -----------------------------------------------------------------------------
    import av.codec.hwaccel

    row("device", "device", str(dev) + (f" {torch.cuda.get_device_name(dev)}" if cuda else ""))
    row("device", "torch / CUDA / cuDNN", f"{torch.__version__} / {torch.version.cuda} / "
        f"{torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}")
    if cuda:
        props = torch.cuda.get_device_properties(dev)
        row("device", "GPU memory / SMs / capability",
            f"{props.total_memory / 2**30:.1f} GiB / {props.multi_processor_count} / {props.major}.{props.minor}")
    row("device", "CPUs (affinity) / decode workers", f"{len(os.sched_getaffinity(0))} / {default_decode_workers()}")
    row("device", "CPU native bf16 / torch threads", f"{cpu_has_native_bf16()} / {torch.get_num_threads()}")
    row("device", "PyAV hw decoders", ", ".join(av.codec.hwaccel.hwdevices_available()) or "none")

    # --- correctness on real frames ---------------------------------------------------------------
    torch.manual_seed(0)
    if args.checkpoint:
        from modal_gpu.checkpoint import load_checkpoint

        model, _ = load_checkpoint(args.checkpoint)
    else:
        model = randomize_for_tests_(build_model(), seed=0)
    model = fuse_model(model)
    frames, layout, source = real_frames(n_real, real_dir(args.real))
    row("correctness", "frames", source)
    grey = 255.0 * torch.as_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    ref = torch.as_tensor(np.stack([reference_transform(f, layout.anchor_type) for f in frames]))
    fast = FramePreprocessor(dev)(frames, layout.anchor_type).cpu()
    pre_diff = float(((fast - ref).abs() * grey).max())
    ok = pre_diff <= 1.0 + 1e-3
    failed |= not ok
    row("correctness", f"preprocessing {dev.type} vs PIL reference", f"max {pre_diff:.2f} grey levels",
        "OK" if ok else "MISSED (<= 1)")
    base = ModelPredictor(model, model_version="check_00000000", device="cpu", batch_size=16,
                          options=InferenceOptions(precision="fp32"))
    want_f, want_b = base.predict(frames, layout)
    want = np.concatenate([want_f, want_b])
    # fp16 on a CPU is emulated (slow): left out of the small CPU run
    for prec in ("fp32", "bf16") if args.small and not cuda else ("fp32", "fp16", "bf16"):
        p = ModelPredictor(model, model_version="check_00000000", device=dev, batch_size=16,
                           options=InferenceOptions(precision=prec, cuda_batch_size=16))
        got = np.concatenate(p.predict(frames, layout))
        agree = float(np.mean(got.argmax(1) == want.argmax(1))) * 100
        ok = agree >= 99.9
        failed |= not ok
        row("correctness", f"model {prec} on {dev.type} vs fp32 cpu",
            f"argmax {agree:.2f} % of {len(got)}, max prob diff {np.abs(got - want).max():.4f}",
            "OK" if ok else "MISSED (>= 99.9 %)")

    # --- a synthetic video in a local store -------------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="device_check_") as tmp:
        store, prefix = LocalStore(tmp), "check/video/cropped_frames_v1/"
        t = time.perf_counter()
        write_video(store, prefix, pairs + 1)
        syn_layout = synthetic_layout()
        index = discover_chunks(store, prefix)
        ref0 = min(index.keys)
        data = store.get_bytes(index.keys[ref0])
        cpu_dec = np.stack(_decode(data, index.keys[ref0], ref0, 10**9, "cpu"))
        hw_dec = np.stack(_decode(data, index.keys[ref0], ref0, 10**9, "cuda"))
        dec_diff = int(np.abs(cpu_dec.astype(np.int16) - hw_dec).max())
        hw = "cuda" in av.codec.hwaccel.hwdevices_available() and cuda
        ok = dec_diff <= 2
        failed |= not ok
        row("correctness", "decode cuda (NVDEC) vs cpu", f"max {dec_diff} grey levels"
            + ("" if hw else " (cpu fallback)"), "OK" if ok else "MISSED (<= 2)")
        row("throughput", "synthetic video", f"{pairs + 1} frames 1280x100 written in {time.perf_counter() - t:.1f} s")

        best = 0.0
        for batch in batches:
            if cuda:
                torch.cuda.reset_peak_memory_stats(dev)
            options = InferenceOptions(precision=args.precision, compile=args.compile, cuda_graphs=args.cuda_graphs,
                                       cuda_batch_size=batch)
            p = ModelPredictor(model, model_version="check_00000000", device=dev, batch_size=batch, options=options)
            window = max(256, p.pairs_per_step)

            def decode_only(window=window):
                for _ in iter_frames(store, prefix, 0, pairs, window=window, overlap=1, index=index):
                    pass

            t_dec = timed(decode_only, False, repeats=repeats)
            with torch.inference_mode():
                ocr, sp = p.ocr_tensor(syn_layout), torch.rand(1, 6, device=dev)
                x = torch.randn(p.pairs_per_step + 1, 3, 48, 480, device=dev)
                t_model = timed(lambda p=p, ocr=ocr, x=x, sp=sp: p._logits(p._step_inputs(ocr, x, sp)).sum().item(),
                                cuda, repeats=repeats)
            t_all = timed(lambda p=p: predict_range(store, prefix, syn_layout, 0, pairs, p), cuda, repeats=repeats)
            peak = f"{torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB" if cuda else "n/a (cpu)"
            whole = pairs / t_all
            best = max(best, whole)
            row("throughput", f"batch {batch} ({p.pairs_per_step} pairs/step, {p.amp_dtype or 'fp32'})",
                f"decode {pairs / t_dec:8.1f} | model {p.pairs_per_step / t_model:8.1f} | "
                f"shard path {whole:8.1f} pairs/s | peak GPU {peak}")
        size = sized_shard_pairs(best, settings.shard_target_s, settings.shard_pairs)
        row("sizing", "BOUNDARIES_SHARD_PAIRS_PER_S / shard size",
            f"{best:.0f} -> {size} pairs per shard at shard_target_s={settings.shard_target_s:g}")
        if cuda:
            row("goal", f"whole shard path >= {GOAL_PAIRS_PER_S:.0f} pairs/s", f"{best:.0f}",
                "OK" if best >= GOAL_PAIRS_PER_S else "MISSED")

    table = Table(title=f"device_check ({'small' if args.small else 'full'}, {dev.type})")
    for col in ("section", "item", "value", "verdict"):
        table.add_column(col)
    for r in rows:
        table.add_row(*r)
    Console(width=200).print(table)
    print("DEVICE_CHECK " + ("FAILED" if failed else "OK"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
