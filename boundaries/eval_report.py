"""Pictures of an evaluation (issue 15): ``boundaries eval --report DIR``.

* ``timeline.png``: one column per frame pair (``px`` pixels wide, wrapped into rows of ``per_row``
  pairs); for each row a strip of the true labels, a strip of the predicted labels and a marker
  strip: events matched within ±1 frame in green, misses (true events with no prediction) in red,
  false alarms (predicted events with no true one) in orange. Label colours: see :data:`COLOURS`.
  Without labels (``truth=None``) only the predicted strip is drawn.
* ``miss_<pair>.png`` / ``false_alarm_<pair>.png``: the caption-band frames ``pair-2 .. pair+3``
  side by side (stacked), each captioned with its frame index and its true / predicted pair label.

Events and matching are those of :mod:`boundaries.evaluation` (±1 frame, greedy one-to-one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from boundaries.evaluation import EVENT_LABELS, match_events
from boundaries.labels import LABELS

COLOURS = {"same": (70, 110, 200), "different": (220, 40, 200), "empty_empty": (225, 225, 225),
           "empty_valid": (40, 170, 60), "valid_empty": (230, 130, 20)}
"""RGB per pair label in the timeline."""
MARK = {"hit": (40, 170, 60), "miss": (220, 30, 30), "false_alarm": (250, 150, 0)}
CONTEXT = (-2, 4)
"""Frames shown around a missed / false event at pair k (pair k is frames k, k+1): k-2 .. k+3."""


def event_outcomes(pred: Sequence[str], truth: Sequence[str], tol: int = 1) -> dict[str, list[int]]:
    """Pair indices of ``hit`` (true events matched), ``miss`` and ``false_alarm`` events."""
    p = [k for k, x in enumerate(pred) if x in EVENT_LABELS]
    t = [k for k, x in enumerate(truth) if x in EVENT_LABELS]
    m = match_events(p, t, tol)
    mt, mp = {a for a, _ in m}, {b for _, b in m}
    return {"hit": sorted(mt), "miss": [k for k in t if k not in mt], "false_alarm": [k for k in p if k not in mp]}


def timeline_image(pred: Sequence[str], truth: Sequence[str] | None = None, *, px: int = 3,
                   per_row: int = 400, title: str = ""):
    """PIL image of the timeline (see module docstring). ``pred``/``truth``: labels of pairs 0..P-1."""
    from PIL import Image, ImageDraw

    n = len(pred)
    if truth is not None and len(truth) != n:
        raise ValueError(f"truth has {len(truth)} pairs but pred has {n}")
    strips = (["truth"] if truth is not None else []) + ["pred"] + (["events"] if truth is not None else [])
    sh, gap, left, top = 14, 10, 50, 36
    rows = max(1, -(-n // per_row))
    width = left + per_row * px + 10
    height = top + rows * (len(strips) * sh + gap + 12) + 30
    im = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(im)
    d.text((4, 4), title or f"{n} pairs", fill=(0, 0, 0))
    legend_x = 4
    for name, c in COLOURS.items():
        d.rectangle((legend_x, 20, legend_x + 8, 28), fill=c)
        d.text((legend_x + 11, 18), name, fill=(0, 0, 0))
        legend_x += 14 + 7 * len(name)
    out = event_outcomes(pred, truth) if truth is not None else {}
    mark = {}
    for kind in ("hit", "miss", "false_alarm"):
        for k in out.get(kind, []):
            mark[k] = MARK[kind]
    for r in range(rows):
        y0 = top + r * (len(strips) * sh + gap + 12)
        d.text((4, y0), f"{r * per_row}", fill=(0, 0, 0))
        for s, strip in enumerate(strips):
            y = y0 + 10 + s * sh
            d.text((left - 40, y), strip[:6], fill=(90, 90, 90))
            for k in range(r * per_row, min(n, (r + 1) * per_row)):
                x = left + (k - r * per_row) * px
                if strip == "events":
                    if k in mark:
                        d.rectangle((x - 1, y + 2, x + px, y + sh - 2), fill=mark[k])
                else:
                    lab = (truth if strip == "truth" else pred)[k]
                    d.rectangle((x, y + 1, x + px - 1, y + sh - 2), fill=COLOURS[lab])
    return im


def context_image(frames: Callable[[int], np.ndarray | None], k: int, pred: Sequence[str],
                  truth: Sequence[str] | None, kind: str):
    """Caption-band frames around pair ``k`` stacked vertically, each with index and labels."""
    from PIL import Image, ImageDraw

    n_frames = len(pred) + 1
    idx = [i for i in range(k + CONTEXT[0], k + CONTEXT[1]) if 0 <= i < n_frames]
    tiles = [(i, frames(i)) for i in idx]
    tiles = [(i, t) for i, t in tiles if t is not None]
    if not tiles:
        raise ValueError(f"no frames around pair {k}")
    w = max(t.shape[1] for _, t in tiles)
    lab_h = 14
    im = Image.new("RGB", (w, 18 + sum(t.shape[0] + lab_h for _, t in tiles)), (255, 255, 255))
    d = ImageDraw.Draw(im)
    d.text((2, 2), f"{kind} at pair {k} (frames {k}->{k + 1})", fill=MARK.get(kind, (0, 0, 0)))
    y = 18
    for i, t in tiles:
        lab = ""
        if i >= 1:
            lab = f"pair {i - 1}->{i}: pred {pred[i - 1]}" + (f", true {truth[i - 1]}" if truth is not None else "")
        d.text((2, y), f"frame {i}  {lab}", fill=(200, 0, 0) if i - 1 == k or i == k + 1 else (0, 0, 0))
        im.paste(Image.fromarray(t), (0, y + lab_h))
        y += t.shape[0] + lab_h
    return im


def write_report(out_dir: Path, pred: Sequence[str], truth: Sequence[str] | None,
                 frames: Callable[[int], np.ndarray | None] | None = None, *, title: str = "",
                 max_pictures: int = 50) -> list[Path]:
    """Write ``timeline.png`` and (with ``truth`` and ``frames``) one picture per miss / false alarm
    (at most ``max_pictures`` in all) into ``out_dir`` (created). Returns the paths written.

    ``frames(i)``: uint8 (h, w, 3) RGB caption band of frame i, or None when not available.
    """
    for lab in list(pred) + list(truth or []):
        if lab not in LABELS:
            raise ValueError(f"label {lab!r} is not one of {LABELS}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "timeline.png"]
    timeline_image(pred, truth, title=title).save(paths[0])
    if truth is None or frames is None:
        return paths
    outcomes = event_outcomes(pred, truth)
    todo = [(k, "miss") for k in outcomes["miss"]] + [(k, "false_alarm") for k in outcomes["false_alarm"]]
    for k, kind in sorted(todo)[:max_pictures]:
        p = out_dir / f"{kind}_{k:06d}.png"
        context_image(frames, k, pred, truth, kind).save(p)
        paths.append(p)
    return paths


def write_run_timeline(results_db: bytes, out_dir: Path) -> Path:
    """``timeline.png`` of a run without labels: the forward labels of a results database
    (COMPAT.md §5, :func:`boundaries.results_db.read_results_db`), written into ``out_dir``.

    Raises:
        ValueError: the database's pairs are not frame1_index 0..P-1 without gaps.
    """
    from boundaries.results_db import read_results_db

    res = read_results_db(results_db)
    idx = res["frame1_index"]
    if not np.array_equal(idx, np.arange(len(idx))):
        raise ValueError("results database: frame1_index must be 0..P-1 without gaps")
    meta = res["meta"]
    title = f"run {meta['run_id']} ({meta['model_version']}): {len(idx)} pairs, predicted labels only"
    return write_report(out_dir, res["forward_labels"], None, title=title)[0]
