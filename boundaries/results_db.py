"""The per-run results database (SQLite, COMPAT.md §5): schema, writer and reader."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass

import numpy as np

from boundaries.labels import LABELS

_PROB_COLS = [f"prob_{label}" for label in LABELS]
_LABEL_CHECK = ", ".join(f"'{label}'" for label in LABELS)


def _direction_cols(prefix: str) -> str:
    cols = [
        f"{prefix}predicted_label TEXT NOT NULL CHECK ({prefix}predicted_label IN ({_LABEL_CHECK}))",
        f"{prefix}confidence REAL NOT NULL CHECK ({prefix}confidence BETWEEN 0 AND 1)",
    ]
    cols += [f"{prefix}{c} REAL NOT NULL CHECK ({prefix}{c} BETWEEN 0 AND 1)" for c in _PROB_COLS]
    return ",\n    ".join(cols)


SCHEMA = f"""
CREATE TABLE run_metadata (
    run_id TEXT PRIMARY KEY,
    cropped_frames_version INTEGER,
    model_version TEXT NOT NULL,
    model_checkpoint_path TEXT,
    started_at TEXT NOT NULL,
    completed_at TEXT NOT NULL,
    total_pairs INTEGER NOT NULL,
    processing_time_seconds REAL
);
CREATE TABLE pair_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    frame1_index INTEGER NOT NULL,
    frame2_index INTEGER NOT NULL,
    {_direction_cols("forward_")},
    {_direction_cols("backward_")},
    processing_time_ms REAL,
    UNIQUE(frame1_index, frame2_index)
);
"""


@dataclass(frozen=True)
class RunMetadata:
    run_id: str
    cropped_frames_version: int
    model_version: str
    model_checkpoint_path: str | None
    started_at: str
    """ISO 8601, UTC."""
    completed_at: str
    total_pairs: int
    processing_time_seconds: float


def build_results_db(meta: RunMetadata, frame1_index: np.ndarray, forward: np.ndarray, backward: np.ndarray,
                     processing_time_ms: np.ndarray) -> bytes:
    """The results database file as bytes.

    Args:
        frame1_index: ``int64 (P,)``, strictly increasing; pair p is (frame1_index[p], frame1_index[p] + 1).
        forward, backward: ``float32 (P, 5)`` probabilities in LABELS order.
        processing_time_ms: ``float (P,)`` model+preprocessing time per pair in milliseconds.

    Raises:
        ValueError: shapes disagree, or ``meta.total_pairs`` != P (a run with missing pairs is not complete).
    """
    n = len(frame1_index)
    if forward.shape != (n, len(LABELS)) or backward.shape != (n, len(LABELS)) or len(processing_time_ms) != n:
        raise ValueError(f"shape mismatch: frame1_index {frame1_index.shape}, forward {forward.shape}, "
                         f"backward {backward.shape}, processing_time_ms {np.shape(processing_time_ms)}")
    if meta.total_pairs != n:
        raise ValueError(f"total_pairs={meta.total_pairs} but {n} pair rows given")
    fwd = np.clip(forward.astype(np.float64), 0.0, 1.0)
    bwd = np.clip(backward.astype(np.float64), 0.0, 1.0)
    labels = np.array(LABELS)
    rows = zip(
        frame1_index.tolist(), (frame1_index + 1).tolist(),
        labels[fwd.argmax(1)].tolist(), fwd.max(1).tolist(), *fwd.T.tolist(),
        labels[bwd.argmax(1)].tolist(), bwd.max(1).tolist(), *bwd.T.tolist(),
        np.asarray(processing_time_ms, dtype=np.float64).tolist(), strict=True,
    )
    cols = (["frame1_index", "frame2_index", "forward_predicted_label", "forward_confidence"]
            + [f"forward_{c}" for c in _PROB_COLS] + ["backward_predicted_label", "backward_confidence"]
            + [f"backward_{c}" for c in _PROB_COLS] + ["processing_time_ms"])
    fd, path = tempfile.mkstemp(suffix=".db")
    os.close(fd)
    try:
        con = sqlite3.connect(path)
        with con:
            con.executescript(SCHEMA)
            con.execute("INSERT INTO run_metadata VALUES (?,?,?,?,?,?,?,?)", (
                meta.run_id, meta.cropped_frames_version, meta.model_version, meta.model_checkpoint_path,
                meta.started_at, meta.completed_at, meta.total_pairs, meta.processing_time_seconds))
            con.executemany(
                f"INSERT INTO pair_results ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
        con.close()
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def read_results_db(data: bytes) -> dict:
    """Parse a results database: ``{"meta": dict, "frame1_index": int64 (P,), "forward_labels": list[str],
    "forward": float64 (P,5), "backward": float64 (P,5)}`` ordered by frame1_index."""
    fd, path = tempfile.mkstemp(suffix=".db")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        con = sqlite3.connect(path)
        con.row_factory = sqlite3.Row
        meta = dict(con.execute("SELECT * FROM run_metadata").fetchone())
        rows = con.execute(
            f"SELECT frame1_index, forward_predicted_label, {', '.join('forward_' + c for c in _PROB_COLS)},"
            f" {', '.join('backward_' + c for c in _PROB_COLS)} FROM pair_results ORDER BY frame1_index"
        ).fetchall()
        con.close()
    finally:
        os.unlink(path)
    arr = np.array([tuple(r)[2:] for r in rows], dtype=np.float64).reshape(len(rows), 2 * len(LABELS))
    return {
        "meta": meta,
        "frame1_index": np.array([r[0] for r in rows], dtype=np.int64),
        "forward_labels": [r[1] for r in rows],
        "forward": arr[:, : len(LABELS)],
        "backward": arr[:, len(LABELS):],
    }
