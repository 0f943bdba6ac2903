"""Accuracy of the classical detector on the labelled real videos (issue 8), leave-one-video-out.

Usage::

    .venv/bin/python scripts/eval_real.py [--data DIR] [--manifest eval/manifest.toml]
                                          [--cache-dir DIR] [--json OUT.json]

For every entry of ``eval/manifest.toml``: ingest the video with the production path
(:func:`boundaries.ingest.ingest_video`: ffmpeg ``fps=10`` filter as the labels were made, pixel
crop, VP9 chunks + layout.db) into a LocalStore cached under ``--cache-dir``, then read it back with
:func:`boundaries.frames.reader.iter_frames` in the windows :func:`modal_gpu.shard.predict_range`
forms (256 frames + the previous window's last frame). The held-out video's final labels come from
``predict_range`` itself and are checked against the windowed scores used for tuning.
The detector's presence threshold and scale and its change threshold are tuned by a grid search
on the OTHER videos only (each video's grid is computed once), then the held-out video is scored
with :func:`boundaries.evaluation.score`. Prints one table.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import tempfile
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from boundaries.evaluation import format_table, score  # noqa: E402
from boundaries.frames.reader import iter_frames  # noqa: E402
from boundaries.labels import LABELS  # noqa: E402
from boundaries.layout_config import LayoutConfig  # noqa: E402
from boundaries.storage.local import LocalStore  # noqa: E402
from modal_gpu.detector import ClassicalDetector, DetectorParams  # noqa: E402
from modal_gpu.shard import predict_range  # noqa: E402
from worker.evaluate import load_pair_labels  # noqa: E402

WINDOW = 256
"""Frames per :func:`iter_frames` batch, as :func:`modal_gpu.shard.predict_range` reads them."""
TENANT = "00000000-0000-4000-8000-000000000001"
VIDEO = "00000000-0000-4000-8000-000000000002"
SCALE_GRID = (0.15, 0.3, 0.6)  # DetectorParams.presence_scale
PRESENCE_GRID = np.round(np.arange(-3.0, -0.29, 0.1), 2)  # DetectorParams.presence_log10
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


def production_store(entry: Entry, data: Path, cache: Path) -> tuple[LocalStore, str, LayoutConfig, int]:
    """Ingest ``entry`` into a LocalStore under ``cache`` once, as production stores it (COMPAT.md §1-3).

    :func:`boundaries.ingest.ingest_video` decodes with ffmpeg's ``fps=10`` filter (the labels'
    frame numbering), crops in pixels and writes VP9 modulo-16/4/1 chunks + ``layout.db``. Returns
    ``(store, frames_prefix, layout parsed back from layout.db, total_frames)``.
    """
    from boundaries.frames.layoutdb import parse_layout_db
    from boundaries.ingest import ingest_video
    from config.settings import Settings

    key = hashlib.sha256(f"{entry.path}|{entry.crop}|{entry.anchor}|ingest".encode()).hexdigest()[:16]
    root = cache / f"{entry.name}_{key}"
    done = root / "ingest.json"
    store = LocalStore(root / "store")
    if not done.exists():
        res = ingest_video(data / entry.path, entry.crop, entry.anchor, store, Settings(), TENANT, VIDEO)
        done.write_text(json.dumps({"frames_prefix": res.frames_prefix, "layout_db_key": res.layout_db_key,
                                    "total_frames": res.total_frames}))
    meta = json.loads(done.read_text())
    layout = parse_layout_db(store.get_bytes(meta["layout_db_key"]), source=meta["layout_db_key"])
    return store, meta["frames_prefix"], layout, int(meta["total_frames"])


def production_windows(store: LocalStore, prefix: str, total: int) -> list[np.ndarray]:
    """The frame windows :func:`modal_gpu.shard.predict_range` passes to ``predict`` for a one-shard
    run of the whole video: :func:`iter_frames` batches of WINDOW frames, each after the first
    prefixed with the previous batch's last frame (the pair across the seam)."""
    out, carry = [], None
    for batch in iter_frames(store, prefix, 0, total - 1, window=WINDOW):
        frames = batch.frames if carry is None else np.concatenate([carry[None], batch.frames])
        if len(frames) >= 2:
            out.append(frames)
        carry = frames[-1].copy()
    return out


def windowed_scores(det: ClassicalDetector, windows: list[np.ndarray], layout: LayoutConfig):
    """Raw detector scores per production window."""
    return [det.pair_scores(w, layout) for w in windows]


def predict_labels(windows: list, params: DetectorParams) -> list[str]:
    """Forward labels of every pair, window by window (as production calls ``predict``)."""
    return [lab for w in windows for lab in ClassicalDetector.labels_from_scores(w, params)]


def calibration(fwd: np.ndarray, truth: list[str], bins: int = 10) -> dict:
    """Mean confidence (max probability), accuracy of the argmax, and expected calibration error
    (``bins`` equal-width confidence bins, weighted by pair count) of forward probabilities (P, 5)."""
    conf = fwd.max(axis=1).astype(float)
    hit = fwd.argmax(axis=1) == np.array([LABELS.index(t) for t in truth])
    edges = np.minimum((conf * bins).astype(int), bins - 1)
    ece = sum(abs(conf[edges == b].mean() - hit[edges == b].mean()) * np.count_nonzero(edges == b)
              for b in range(bins) if np.any(edges == b)) / len(conf)
    return {"mean_confidence": float(conf.mean()), "accuracy": float(hit.mean()), "ece": float(ece)}


def grid_values(video: dict) -> np.ndarray:
    """(macro-F1 + event F1 ±1) of one video at every grid point, shape (scales, presences, changes)."""
    vals = np.empty((len(SCALE_GRID), len(PRESENCE_GRID), len(CHANGE_GRID)))
    for (a, sc), (i, dp), (j, dc) in itertools.product(enumerate(SCALE_GRID), enumerate(PRESENCE_GRID),
                                                       enumerate(CHANGE_GRID)):
        params = replace(BASE, presence_scale=float(sc), presence_log10=float(dp), change_threshold=float(dc))
        r = score(predict_labels(video["scores"], params), video["truth"])
        vals[a, i, j] = r["macro_f1"] + r["event_f1_tol1"]
    return vals


def tune(videos: list[dict]) -> DetectorParams:
    """Grid point maximising the mean over ``videos`` of (macro-F1 + event F1 ±1) (``video["grid"]``).

    Ties (a plateau of equal scores) are broken towards the middle of the plateau: the maximal grid
    point nearest (in grid steps) to the maximal points' centroid, not the first one scanned.
    """
    vals = np.mean([v["grid"] for v in videos], axis=0)
    best = np.argwhere(vals >= vals.max() - 1e-9)
    a, i, j = best[np.argmin(((best - best.mean(axis=0)) ** 2).sum(axis=1))]
    return replace(BASE, presence_scale=float(SCALE_GRID[a]), presence_log10=float(PRESENCE_GRID[i]),
                   change_threshold=float(CHANGE_GRID[j]))


BASE = DetectorParams()
"""Parameters the grid search starts from (the shipped defaults unless ``--param`` overrides some)."""


def set_base(overrides: list[str]) -> DetectorParams:
    """Apply ``name=value`` overrides (``--param``) to :data:`BASE`; the value is cast to the field's type."""
    global BASE
    types = {f.name: type(getattr(BASE, f.name)) for f in fields(DetectorParams)}
    for o in overrides:
        name, _, value = o.partition("=")
        if name not in types:
            raise SystemExit(f"--param {o!r}: no DetectorParams field {name!r}; one of {sorted(types)}")
        BASE = replace(BASE, **{name: types[name](value)})
    return BASE


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "real")
    ap.add_argument("--manifest", type=Path, default=REPO / "eval" / "manifest.toml")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "boundaries-eval-cache")
    ap.add_argument("--json", type=Path, default=None, help="write per-video results as JSON here")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="override a DetectorParams field for this run (repeatable)")
    args = ap.parse_args(argv)

    det = ClassicalDetector(set_base(args.param))
    videos = []
    for e in load_manifest(args.manifest):
        store, prefix, layout, total = production_store(e, args.data, args.cache_dir)
        truth = load_pair_labels(args.data / e.labels, video_key=e.labels_video)
        if len(truth) != total - 1:
            raise ValueError(f"{e.name}: {total} frames but {len(truth)} pair labels")
        windows = production_windows(store, prefix, total)
        videos.append({"entry": e, "truth": truth, "scores": windowed_scores(det, windows, layout),
                       "store": (store, prefix, layout, total)})
        videos[-1]["grid"] = grid_values(videos[-1])

    rows = []
    for i, v in enumerate(videos):
        params = tune([w for j, w in enumerate(videos) if j != i])
        pred = predict_labels(v["scores"], params)
        store, prefix, layout, total = v["store"]
        fwd, _ = predict_range(store, prefix, layout, 0, total - 1, ClassicalDetector(params))
        if [LABELS[k] for k in fwd.argmax(axis=1)] != pred:  # the tuning shortcut must be what production does
            raise RuntimeError(f"{v['entry'].name}: predict_range labels differ from the windowed scores")
        r = score(pred, v["truth"])
        r["calibration"] = calibration(fwd, v["truth"])
        r["name"], r["group"] = v["entry"].name, v["entry"].group
        r["params"] = {"presence_scale": params.presence_scale, "presence_log10": params.presence_log10,
                       "change_threshold": params.change_threshold}
        rows.append(r)
    print(format_table(rows))
    for g in sorted({r["group"] for r in rows}):
        sel = [r for r in rows if r["group"] == g]
        print(f"{g}: mean macro-F1 {np.mean([r['macro_f1'] for r in sel]):.3f}, mean event F1 ±1 "
              f"{np.mean([r['event_f1_tol1'] for r in sel]):.3f}, mean F1(different) "
              f"{np.mean([d for r in sel if (d := r['per_class_f1']['different']) is not None]):.3f}")
    for r in rows:
        c = r["calibration"]
        print(f"{r['name']}: tuned on the others -> {r['params']}; mean confidence {c['mean_confidence']:.3f}"
              f" vs accuracy {c['accuracy']:.3f}, ECE {c['ece']:.3f}")
    shipped = [score(predict_labels(v["scores"], det.params), v["truth"]) for v in videos]
    print("shipped parameters (as `boundaries eval` runs): " + ", ".join(
        f"{v['entry'].name} event F1 ±1 {r['event_f1_tol1']:.3f} macro-F1 {r['macro_f1']:.3f}"
        for v, r in zip(videos, shipped, strict=True)))
    every = tune(videos)
    print(f"tuned on all videos (DetectorParams defaults should be these): presence_scale="
          f"{every.presence_scale}, presence_log10={every.presence_log10}, "
          f"change_threshold={every.change_threshold}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
