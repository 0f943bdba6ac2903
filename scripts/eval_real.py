"""Accuracy of the classical detector on the labelled real videos (issue 8), leave-one-video-out.

Usage::

    .venv/bin/python scripts/eval_real.py [--data DIR] [--manifest eval/manifest.toml]
                                          [--cache-dir DIR] [--json OUT.json]

For every entry of ``eval/manifest.toml``: decode at 10 fps with ffmpeg's ``fps=10`` filter (PyAV
filter graph, as the labels were made), crop the caption band, round-trip through VP9 CRF 30
(GOP 32, yuv420p; COMPAT.md §2) so frames look like what production decodes, then run the detector
on windows of 256 frames overlapping by one frame (as the shard function calls ``predict``).
The detector's two thresholds are tuned by a small grid search on the OTHER videos only, then the
held-out video is scored with :func:`boundaries.evaluation.score`. Prints one table.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from boundaries.evaluation import format_table, score  # noqa: E402
from boundaries.layout_config import LayoutConfig  # noqa: E402
from modal_gpu.detector import ClassicalDetector, DetectorParams  # noqa: E402

WINDOW = 256
PRESENCE_GRID = np.round(np.arange(-2.2, -0.49, 0.1), 2)  # DetectorParams.presence_log10
CHANGE_GRID = np.round(np.arange(0.15, 0.76, 0.05), 2)  # DetectorParams.change_threshold


@dataclass(frozen=True)
class Entry:
    name: str
    group: str
    path: str
    labels: str
    crop: tuple[float, float, float, float]
    anchor: str
    labels_video: str | None = None


def load_manifest(path: Path) -> list[Entry]:
    """Entries of the manifest TOML (``[[video]]`` tables; see eval/manifest.toml)."""
    data = tomllib.loads(path.read_text())
    out = []
    for v in data["video"]:
        crop = tuple(float(x) for x in v["crop"])
        if len(crop) != 4 or not (0 <= crop[0] < crop[2] <= 1 and 0 <= crop[1] < crop[3] <= 1):
            raise ValueError(f"manifest entry {v.get('name')!r}: crop must be L<R, T<B in [0,1], got {crop}")
        out.append(Entry(v["name"], v["group"], v["path"], v["labels"], crop, v["anchor"],
                         v.get("labels_video")))
    return out


def load_labels(csv_path: Path, video: str | None) -> list[str]:
    """Pair labels: element k is the pair (k, k+1), read from row k+1's ``pair_label_prev_to_this``."""
    with csv_path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if video is None or r.get("video") == video]
    if not rows:
        raise ValueError(f"labels {csv_path}: no rows for video={video!r}")
    rows.sort(key=lambda r: int(r["frame"]))
    return [r["pair_label_prev_to_this"] for r in rows[1:]]


def decode_10fps(path: Path) -> np.ndarray:
    """``uint8 (N, H, W, 3)`` RGB frames through ffmpeg's ``fps=10`` filter."""
    import av

    frames = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        g = av.filter.Graph()
        src = g.add_buffer(template=s)
        fps = g.add("fps", "10")
        sink = g.add("buffersink")
        src.link_to(fps)
        fps.link_to(sink)
        g.configure()

        def drain() -> None:
            while True:
                try:
                    frames.append(g.pull().to_ndarray(format="rgb24"))
                except (av.BlockingIOError, av.EOFError):
                    return

        for fr in c.decode(s):
            g.push(fr)
            drain()
        g.push(None)
        drain()
    return np.stack(frames)


def vp9_roundtrip(frames: np.ndarray, crf: int = 30, gop: int = 32) -> np.ndarray:
    """Encode with libvpx-vp9 CRF ``crf`` (``-b:v 0``, yuv420p, 10 fps) in memory and decode back."""
    import io

    import av

    n, h, w, _ = frames.shape
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        st = out.add_stream("libvpx-vp9", rate=10)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"crf": str(crf), "b": "0", "g": str(gop), "deadline": "good", "cpu-used": "4"}
        for f in frames:
            for p in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    buf.seek(0)
    with av.open(buf) as c:
        dec = np.stack([fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)])
    if dec.shape != frames.shape:
        raise RuntimeError(f"VP9 round trip changed shape {frames.shape} -> {dec.shape}")
    return dec


def band_frames(entry: Entry, data: Path, cache: Path) -> tuple[np.ndarray, LayoutConfig]:
    """Production-like caption-band frames of one entry (cached under ``cache``)."""
    key = hashlib.sha256(f"{entry.path}|{entry.crop}|vp9crf30g32".encode()).hexdigest()[:16]
    f = cache / f"{entry.name}_{key}.npy"
    full_shape_f = cache / f"{entry.name}_{key}.json"
    if f.exists() and full_shape_f.exists():
        bands = np.load(f)
        fw, fh = json.loads(full_shape_f.read_text())
    else:
        full = decode_10fps(data / entry.path)
        fh, fw = full.shape[1:3]
        left, t, r, b = entry.crop
        x0, y0, x1, y1 = round(left * fw), round(t * fh), round(r * fw), round(b * fh)
        bands = vp9_roundtrip(np.ascontiguousarray(full[:, y0:y1, x0:x1]))
        cache.mkdir(parents=True, exist_ok=True)
        np.save(f, bands)
        full_shape_f.write_text(json.dumps([fw, fh]))
    left, t, r, b = entry.crop
    layout = LayoutConfig(frame_width=fw, frame_height=fh, crop_left=round(left * fw), crop_top=round(t * fh),
                          crop_right=round(r * fw), crop_bottom=round(b * fh), anchor_type=entry.anchor,
                          ocr_visualization_png=b"")
    return bands, layout


def windowed_scores(det: ClassicalDetector, frames: np.ndarray, layout: LayoutConfig):
    """Raw detector scores per window of WINDOW frames, consecutive windows sharing one frame."""
    parts = []
    start = 0
    while start < len(frames) - 1:
        parts.append(det.pair_scores(frames[start:start + WINDOW], layout))
        start += WINDOW - 1
    return parts


def predict_labels(windows: list, params: DetectorParams) -> list[str]:
    """Forward labels of every pair, window by window (as production calls ``predict``)."""
    return [lab for w in windows for lab in ClassicalDetector.labels_from_scores(w, params)]


def tune(videos: list[dict]) -> DetectorParams:
    """Grid search of the two thresholds maximising the mean of (macro-F1 + event F1 ±1) per video."""
    best, best_val = None, -1.0
    for dp in PRESENCE_GRID:
        for dc in CHANGE_GRID:
            params = DetectorParams(presence_log10=float(dp), change_threshold=float(dc))
            vals = []
            for v in videos:
                pred = predict_labels(v["scores"], params)
                r = score(pred, v["truth"])
                vals.append(r["macro_f1"] + r["event_f1_tol1"])
            val = float(np.mean(vals))
            if val > best_val + 1e-9:
                best, best_val = params, val
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "real")
    ap.add_argument("--manifest", type=Path, default=REPO / "eval" / "manifest.toml")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "boundaries-eval-cache")
    ap.add_argument("--json", type=Path, default=None, help="write per-video results as JSON here")
    args = ap.parse_args(argv)

    det = ClassicalDetector()
    videos = []
    for e in load_manifest(args.manifest):
        frames, layout = band_frames(e, args.data, args.cache_dir)
        truth = load_labels(args.data / e.labels, e.labels_video)
        if len(truth) != len(frames) - 1:
            raise ValueError(f"{e.name}: {len(frames)} frames but {len(truth)} pair labels")
        videos.append({"entry": e, "truth": truth, "scores": windowed_scores(det, frames, layout)})

    rows = []
    for i, v in enumerate(videos):
        params = tune([w for j, w in enumerate(videos) if j != i])
        pred = predict_labels(v["scores"], params)
        r = score(pred, v["truth"])
        r["name"], r["group"] = v["entry"].name, v["entry"].group
        r["params"] = {"presence_log10": params.presence_log10, "change_threshold": params.change_threshold}
        rows.append(r)
    print(format_table(rows))
    for g in sorted({r["group"] for r in rows}):
        sel = [r for r in rows if r["group"] == g]
        print(f"{g}: mean macro-F1 {np.mean([r['macro_f1'] for r in sel]):.3f}, mean event F1 ±1 "
              f"{np.mean([r['event_f1_tol1'] for r in sel]):.3f}, mean F1(different) "
              f"{np.mean([d for r in sel if (d := r['per_class_f1']['different']) is not None]):.3f}")
    for r in rows:
        print(f"{r['name']}: tuned on the others -> {r['params']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
