"""Per-video ``layout.db`` (SQLite, optionally gzipped) <-> :class:`LayoutConfig` (COMPAT.md §3).

Two schemas exist:

* ``video_layout_config`` (row ``id = 1``): ``frame_width``, ``frame_height``, ``crop_left``,
  ``crop_top``, ``crop_right``, ``crop_bottom`` in **pixels**, ``anchor_type``,
  ``ocr_visualization_image`` (PNG BLOB). Preferred when both tables exist.
* ``layout_config`` (newer): the same columns, but crops are **fractions 0-1** of the frame
  size; converted to pixels with ``round(fraction * frame_width|height)``.

The format is sniffed from the content (gzip magic ``1f 8b`` vs ``SQLite format 3\\0``), never
from the name. Every problem raises :class:`boundaries.errors.LayoutError` naming the source, the
table/field and the bad value.
"""

from __future__ import annotations

import gzip
import math
import sqlite3

from boundaries.errors import LayoutError
from boundaries.layout_config import LayoutConfig

SQLITE_MAGIC = b"SQLite format 3\x00"
GZIP_MAGIC = b"\x1f\x8b"
_CROPS = ("crop_left", "crop_top", "crop_right", "crop_bottom")
_FIX = "re-run layout analysis for this video"


def _sqlite_bytes(data: bytes, source: str) -> bytes:
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise LayoutError(f"{source}: gzip data does not decompress ({e}); {_FIX}") from e
    if data[:16] != SQLITE_MAGIC:
        raise LayoutError(f"{source}: not an SQLite database (starts with {data[:16]!r}); {_FIX}")
    return data


def _row(con: sqlite3.Connection, table: str, source: str) -> dict | None:
    exists = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone()
    if not exists:
        return None
    cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
    where = " WHERE id = 1" if "id" in cols else ""
    row = con.execute(f"SELECT * FROM {table}{where} LIMIT 1").fetchone()
    if row is None:
        raise LayoutError(f"{source}: table {table} has no row{' id=1' if where else ''}; {_FIX}")
    return dict(zip(cols, row, strict=True))


def _num(row: dict, field: str, table: str, source: str) -> float:
    v = row.get(field)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise LayoutError(f"{source}: {table}.{field} must be a number, got {v!r} (finite); {_FIX}")
    return v


def parse_layout_db(data: bytes, *, source: str = "layout.db") -> LayoutConfig:
    """Read the layout row of a ``layout.db`` (gzip or plain bytes). Crops come back in pixels.

    Raises LayoutError: not SQLite/gzip, neither table present, no row, a non-numeric or
    out-of-range crop (fractions outside 0-1 in ``layout_config``; non-integer pixels in
    ``video_layout_config``), an empty crop, or a missing/empty ``ocr_visualization_image``.
    """
    raw = _sqlite_bytes(data, source)
    con = sqlite3.connect(":memory:")
    try:
        try:
            con.deserialize(raw)
            row, table = _row(con, "video_layout_config", source), "video_layout_config"
            if row is None:
                row, table = _row(con, "layout_config", source), "layout_config"
        except sqlite3.DatabaseError as e:
            raise LayoutError(f"{source}: unreadable SQLite database ({e}); {_FIX}") from e
    finally:
        con.close()
    if row is None:
        raise LayoutError(f"{source}: has neither a video_layout_config nor a layout_config table; {_FIX}")
    fw = _num(row, "frame_width", table, source)
    fh = _num(row, "frame_height", table, source)
    if fw <= 0 or fh <= 0 or fw != int(fw) or fh != int(fh):
        raise LayoutError(f"{source}: {table} frame size must be positive integers, "
                          f"got {fw!r}x{fh!r}; {_FIX}")
    crops = {f: _num(row, f, table, source) for f in _CROPS}
    if table == "layout_config":
        for f, v in crops.items():
            if not 0.0 <= v <= 1.0:
                raise LayoutError(f"{source}: layout_config.{f} is a fraction 0-1, got {v!r}; {_FIX}")
        px = {f: round(v * (fw if f in ("crop_left", "crop_right") else fh)) for f, v in crops.items()}
    else:
        for f, v in crops.items():
            if v != int(v):
                raise LayoutError(f"{source}: video_layout_config.{f} must be integer pixels, got {v!r} "
                                  f"(fractions belong in layout_config); {_FIX}")
        px = {f: int(v) for f, v in crops.items()}
    if not (0 <= px["crop_left"] < px["crop_right"] <= fw and 0 <= px["crop_top"] < px["crop_bottom"] <= fh):
        raise LayoutError(f"{source}: {table} crop {px} is empty or outside the "
                          f"{int(fw)}x{int(fh)} frame; {_FIX}")
    png = row.get("ocr_visualization_image")
    if not isinstance(png, bytes) or not png:
        raise LayoutError(f"{source}: {table}.ocr_visualization_image is missing or empty; {_FIX}")
    anchor = row.get("anchor_type")
    return LayoutConfig(int(fw), int(fh), px["crop_left"], px["crop_top"], px["crop_right"],
                        px["crop_bottom"], str(anchor) if anchor is not None else "center", png)


_SCHEMA = """
CREATE TABLE video_layout_config (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    frame_width INTEGER NOT NULL, frame_height INTEGER NOT NULL,
    crop_left INTEGER NOT NULL, crop_top INTEGER NOT NULL,
    crop_right INTEGER NOT NULL, crop_bottom INTEGER NOT NULL,
    anchor_type TEXT CHECK (anchor_type IN ('left', 'center', 'right')),
    ocr_visualization_image BLOB
)
"""


def build_layout_db(cfg: LayoutConfig) -> bytes:
    """Plain (not gzipped) SQLite bytes with one ``video_layout_config`` row ``id = 1``, pixel crops."""
    con = sqlite3.connect(":memory:")
    try:
        con.execute(_SCHEMA)
        con.execute(
            "INSERT INTO video_layout_config VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cfg.frame_width, cfg.frame_height, cfg.crop_left, cfg.crop_top, cfg.crop_right, cfg.crop_bottom,
             cfg.anchor_type, cfg.ocr_visualization_png),
        )
        con.commit()
        return con.serialize()
    finally:
        con.close()
