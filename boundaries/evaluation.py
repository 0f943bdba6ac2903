"""Scoring of predicted pair labels against ground truth (issue 8).

Labels are the five pair classes of :data:`boundaries.labels.LABELS` (COMPAT.md §4). Element k of
both label sequences is the pair (frame k, frame k+1); the labelled CSVs in ``shared/data/real``
store it in row k+1's ``pair_label_prev_to_this`` (see ``SOURCES.md`` there).

Metrics:

* ``confusion``: 5x5 counts, rows = true label, columns = predicted label, in ``LABELS`` order.
* ``per_class_f1``: F1 per label; ``None`` for a label that occurs neither in the truth nor in the
  predictions (undefined), and such labels are left out of ``macro_f1`` (the mean of the rest).
* Events: pairs labelled ``different``, ``empty_valid`` or ``valid_empty`` (a caption starts, ends
  or is replaced). A predicted event matches a true event of ANY of these types whose pair index is
  within ``tol`` frames; matching is greedy one-to-one, closest pairs first (ties: lower true index,
  then lower predicted index). Precision = matched / predicted events, recall = matched / true
  events, F1 their harmonic mean; with no true and no predicted events all three are 1.0.
  ``mean_abs_offset`` = mean |predicted index - true index| over matches (``None`` if none).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from boundaries.labels import LABELS

EVENT_LABELS = ("different", "empty_valid", "valid_empty")
TOLERANCES = (0, 1, 2)
_INDEX = {name: i for i, name in enumerate(LABELS)}


def _as_indices(labels: Sequence[str] | np.ndarray, field: str) -> np.ndarray:
    out = np.empty(len(labels), dtype=np.int64)
    for k, lab in enumerate(labels):
        try:
            out[k] = _INDEX[str(lab)]
        except KeyError:
            raise ValueError(f"{field}[{k}] = {lab!r} is not one of {LABELS}") from None
    return out


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def match_events(pred_idx: Sequence[int], true_idx: Sequence[int], tol: int) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of event indices within ``tol`` frames.

    Returns ``(true_index, pred_index)`` pairs, closest first (ties: lower true, then lower pred).
    """
    cands = sorted((abs(p - t), t, p) for t in true_idx for p in pred_idx if abs(p - t) <= tol)
    used_t: set[int] = set()
    used_p: set[int] = set()
    out = []
    for _, t, p in cands:
        if t not in used_t and p not in used_p:
            used_t.add(t)
            used_p.add(p)
            out.append((t, p))
    return out


def event_scores(pred_idx: Sequence[int], true_idx: Sequence[int], tol: int) -> dict:
    """Event precision/recall/F1 at tolerance ``tol`` (frames) and the mean |offset| of matches."""
    m = match_events(pred_idx, true_idx, tol)
    n_pred, n_true = len(pred_idx), len(true_idx)
    if n_pred == 0 and n_true == 0:
        precision = recall = 1.0
    else:
        precision = len(m) / n_pred if n_pred else 0.0
        recall = len(m) / n_true if n_true else 0.0
    return {
        "tol": tol, "precision": precision, "recall": recall, "f1": _f1(precision, recall) if (n_pred or n_true)
        else 1.0, "matched": len(m), "n_true": n_true, "n_pred": n_pred,
        "mean_abs_offset": float(np.mean([abs(p - t) for t, p in m])) if m else None,
    }


def score(pred_labels: Sequence[str] | np.ndarray, true_labels: Sequence[str] | np.ndarray) -> dict:
    """Score predicted pair labels against the truth; both of length P (number of pairs).

    Returns a JSON-able dict with ``pairs`` (P), ``confusion`` (5x5 list, rows true), ``per_class_f1``
    (label -> float or None), ``macro_f1``, ``event_f1_tol0``/``1``/``2`` and ``events`` (per
    tolerance: precision, recall, f1, matched, n_true, n_pred, mean_abs_offset).

    Raises:
        ValueError: lengths differ, or a label is not one of ``LABELS`` (names index and value).
    """
    if len(pred_labels) != len(true_labels):
        raise ValueError(f"pred_labels has {len(pred_labels)} pairs but true_labels has {len(true_labels)}")
    p = _as_indices(pred_labels, "pred_labels")
    t = _as_indices(true_labels, "true_labels")
    n = len(LABELS)
    conf = np.zeros((n, n), dtype=np.int64)
    np.add.at(conf, (t, p), 1)
    per_class: dict[str, float | None] = {}
    for i, name in enumerate(LABELS):
        tp, n_true, n_pred = conf[i, i], conf[i, :].sum(), conf[:, i].sum()
        if n_true == 0 and n_pred == 0:
            per_class[name] = None
            continue
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / n_true if n_true else 0.0
        per_class[name] = float(_f1(prec, rec))
    defined = [v for v in per_class.values() if v is not None]
    ev = {_INDEX[e] for e in EVENT_LABELS}
    pred_ev = [k for k, x in enumerate(p) if x in ev]
    true_ev = [k for k, x in enumerate(t) if x in ev]
    events = {str(tol): event_scores(pred_ev, true_ev, tol) for tol in TOLERANCES}
    out = {
        "pairs": int(len(t)),
        "confusion": conf.tolist(),
        "per_class_f1": per_class,
        "macro_f1": float(np.mean(defined)) if defined else 1.0,
        "events": events,
    }
    for tol in TOLERANCES:
        out[f"event_f1_tol{tol}"] = events[str(tol)]["f1"]
    return out


def _fmt(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def format_report(result: dict) -> str:
    """Plain-text report of one :func:`score` result: confusion matrix, per-class F1, events."""
    short = {"same": "same", "different": "diff", "empty_empty": "e_e", "empty_valid": "e_v",
             "valid_empty": "v_e"}
    head = "true\\pred " + " ".join(f"{short[x]:>6}" for x in LABELS)
    lines = [f"pairs: {result['pairs']}   macro-F1: {result['macro_f1']:.3f}", head]
    for name, row in zip(LABELS, result["confusion"], strict=True):
        lines.append(f"{short[name]:>9} " + " ".join(f"{v:>6d}" for v in row))
    lines.append("F1: " + "  ".join(f"{short[k]}={_fmt(v)}" for k, v in result["per_class_f1"].items()))
    for tol, e in result["events"].items():
        off = "-" if e["mean_abs_offset"] is None else f"{e['mean_abs_offset']:.2f}"
        lines.append(f"events ±{tol}: P={e['precision']:.3f} R={e['recall']:.3f} F1={e['f1']:.3f} "
                     f"(matched {e['matched']}/{e['n_true']} true, {e['n_pred']} predicted, "
                     f"mean |offset| {off})")
    return "\n".join(lines)


def format_table(rows: Sequence[dict]) -> str:
    """One line per scored video (dicts from :func:`score` plus ``name`` and optional ``group``)."""
    cols = ("video", "group", "pairs", "macroF1", "F1same", "F1diff", "F1ee", "F1ev", "F1ve",
            "evF1±0", "evF1±1", "evF1±2", "true/pred/hit±1")
    lines = ["  ".join(f"{c:>15}" if i == 0 else f"{c:>8}" for i, c in enumerate(cols))]
    for r in rows:
        e1 = r["events"]["1"]
        cells = [f"{r.get('name', '?'):>15}", f"{r.get('group', ''):>8}"[:8].rjust(8), f"{r['pairs']:>8d}",
                 f"{r['macro_f1']:>8.3f}", *(f"{_fmt(r['per_class_f1'][k]):>8}" for k in LABELS),
                 *(f"{r[f'event_f1_tol{t}']:>8.3f}" for t in TOLERANCES),
                 f"{e1['n_true']}/{e1['n_pred']}/{e1['matched']}".rjust(15)]
        lines.append("  ".join(cells))
    return "\n".join(lines)
