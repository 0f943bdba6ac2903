"""Caption style set (issue 15): leave-one-source-out, tune/test split and per-style tables.

Usage::

    .venv/bin/python scripts/build_style_set.py --out /tmp/boundaries-style-set   # once
    .venv/bin/python scripts/eval_styles.py [--set /tmp/boundaries-style-set] [--cache-dir DIR] [--json OUT]

Every clip is ingested with the production path and scored window by window exactly as
scripts/eval_real.py does (same functions; the final labels are checked against
:func:`modal_gpu.shard.predict_range`). Thresholds (presence level/scale, change threshold) are tuned
by eval_real's grid search:

* **LOSO**: each source's clips are scored with thresholds tuned on the clips of all OTHER sources.
* **split**: thresholds tuned on the ``tune`` sources only, the ``test`` sources scored with them.
* **defaults**: the shipped :class:`modal_gpu.detector.DetectorParams` on every clip.

Per-style tables group the LOSO rows by each style field (colour, decoration, box, size, lines,
position, align, script, background). Metrics: event F1 ±1 frame, macro-F1, F1 of ``different``
(boundaries.evaluation.score).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import eval_real  # noqa: E402

from boundaries.evaluation import format_table, score  # noqa: E402
from boundaries.labels import LABELS  # noqa: E402
from modal_gpu.detector import ClassicalDetector, DetectorParams  # noqa: E402
from modal_gpu.shard import predict_range  # noqa: E402
from worker.evaluate import load_pair_labels  # noqa: E402

STYLE_FIELDS = ("colour", "decoration", "box", "size", "lines", "position", "align", "script", "background")


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else float("nan")


def summary(rows: list[dict]) -> str:
    return (f"n={len(rows):>2}  event F1±1 {_mean(r['event_f1_tol1'] for r in rows):.3f}  macro-F1 "
            f"{_mean(r['macro_f1'] for r in rows):.3f}  F1(different) "
            f"{_mean(r['per_class_f1']['different'] for r in rows):.3f}  min event F1±1 "
            f"{min(r['event_f1_tol1'] for r in rows):.3f}")


def style_table(rows: list[dict]) -> str:
    """Markdown: one line per (style field, value): clips, mean event F1 ±1, macro-F1, F1(different)."""
    lines = ["| style | value | clips | event F1 ±1 | min | macro-F1 | F1 different |", "|---|---|---|---|---|---|---|"]
    for f in STYLE_FIELDS:
        for v in sorted({str(r["style"][f]) for r in rows}):
            sel = [r for r in rows if str(r["style"][f]) == v]
            lines.append(f"| {f} | {v} | {len(sel)} | {_mean(r['event_f1_tol1'] for r in sel):.3f} | "
                         f"{min(r['event_f1_tol1'] for r in sel):.3f} | {_mean(r['macro_f1'] for r in sel):.3f} | "
                         f"{_mean(r['per_class_f1']['different'] for r in sel):.3f} |")
    return "\n".join(lines)


def source_table(rows: list[dict]) -> str:
    lines = ["| held-out source | split | clips | event F1 ±1 | min | macro-F1 | F1 different |",
             "|---|---|---|---|---|---|---|"]
    for s in dict.fromkeys(r["source"] for r in rows):
        sel = [r for r in rows if r["source"] == s]
        lines.append(f"| {s} | {sel[0]['split']} | {len(sel)} | {_mean(r['event_f1_tol1'] for r in sel):.3f} | "
                     f"{min(r['event_f1_tol1'] for r in sel):.3f} | {_mean(r['macro_f1'] for r in sel):.3f} | "
                     f"{_mean(r['per_class_f1']['different'] for r in sel):.3f} |")
    return "\n".join(lines)


def scored(v: dict, params: DetectorParams, check: bool = False) -> dict:
    pred = eval_real.predict_labels(v["scores"], params)
    if check:
        store, prefix, layout, total = v["store"]
        fwd, _ = predict_range(store, prefix, layout, 0, total - 1, ClassicalDetector(params))
        if [LABELS[k] for k in fwd.argmax(axis=1)] != pred:
            raise RuntimeError(f"{v['meta']['name']}: predict_range labels differ from the windowed scores")
    r = score(pred, v["truth"])
    m = v["meta"]
    r.update(name=m["name"], group=m["split"], source=m["source"], split=m["split"],
             style={**m["style"], "background": m["background"]},
             params={"presence_scale": params.presence_scale, "presence_log10": params.presence_log10,
                     "change_threshold": params.change_threshold})
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", type=Path, default=Path(tempfile.gettempdir()) / "boundaries-style-set")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "boundaries-style-cache")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-check", action="store_true", help="skip the predict_range cross-check")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="override a DetectorParams field for this run (repeatable)")
    args = ap.parse_args(argv)

    metas = {m["name"]: m for m in json.loads((args.set / "manifest.json").read_text())}
    det = ClassicalDetector(eval_real.set_base(args.param))
    videos = []
    for e in eval_real.load_manifest(args.set / "manifest.toml"):
        store, prefix, layout, total = eval_real.production_store(e, args.set, args.cache_dir)
        truth = load_pair_labels(args.set / e.labels)
        windows = eval_real.production_windows(store, prefix, total)
        v = {"meta": metas[e.name], "truth": truth, "scores": eval_real.windowed_scores(det, windows, layout),
             "store": (store, prefix, layout, total)}
        v["grid"] = eval_real.grid_values(v)
        videos.append(v)

    sources = list(dict.fromkeys(v["meta"]["source"] for v in videos))
    loso = []
    for s in sources:
        params = eval_real.tune([v for v in videos if v["meta"]["source"] != s])
        loso += [scored(v, params, check=not args.no_check) for v in videos if v["meta"]["source"] == s]
    split_params = eval_real.tune([v for v in videos if v["meta"]["split"] == "tune"])
    split = [scored(v, split_params) for v in videos if v["meta"]["split"] == "test"]
    defaults = [scored(v, det.params) for v in videos]

    print(format_table(loso))
    print("\n## Leave-one-source-out (each source scored with thresholds tuned on the other sources)\n")
    print(source_table(loso))
    print(f"\nLOSO all clips: {summary(loso)}")
    print(f"split (tuned on tune sources {split_params}): test clips {summary(split)}")
    print(f"shipped defaults {det.params}: all clips {summary(defaults)}; test clips "
          f"{summary([r for r in defaults if r['split'] == 'test'])}")
    print("\n## Per style (LOSO rows)\n")
    print(style_table(loso))
    print("\n## Per style (shipped defaults, test sources only)\n")
    print(style_table([r for r in defaults if r["split"] == "test"]))
    if args.json:
        args.json.write_text(json.dumps({"loso": loso, "split": split, "defaults": defaults}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
