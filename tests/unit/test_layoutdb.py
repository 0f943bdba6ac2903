"""layout.db parsing and building (COMPAT.md §3)."""

from __future__ import annotations

import gzip
import sqlite3

import pytest

from boundaries.errors import LayoutError
from boundaries.frames.layoutdb import build_layout_db, parse_layout_db
from boundaries.layout_config import LayoutConfig

PNG = b"\x89PNG\r\n\x1a\n" + b"fake-png-body"


def make_db(sql: str, params: tuple = ()) -> bytes:
    con = sqlite3.connect(":memory:")
    con.executescript(sql.split(";;")[0])
    if params:
        con.execute(sql.split(";;")[1], params)
    con.commit()
    data = con.serialize()
    con.close()
    return data


NEW_TABLE = """CREATE TABLE layout_config (id INTEGER PRIMARY KEY, frame_width INT, frame_height INT,
  crop_left REAL, crop_top REAL, crop_right REAL, crop_bottom REAL, anchor_type TEXT,
  ocr_visualization_image BLOB, extra_col TEXT);;
  INSERT INTO layout_config VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, 'ignored')"""


def test_round_trip_plain_and_gzip():
    # Given a config written by build_layout_db
    cfg = LayoutConfig(1280, 720, 64, 560, 1216, 700, "left", PNG)
    data = build_layout_db(cfg)
    # Then it parses back identically, plain or gzipped, whatever the name says
    assert data[:16] == b"SQLite format 3\x00"
    assert parse_layout_db(data) == cfg
    assert parse_layout_db(gzip.compress(data), source="x/layout.db") == cfg


def test_layout_config_fractions_become_pixels():
    # Given the newer table with crops as fractions of a 1920x1080 frame
    data = make_db(NEW_TABLE, (1920, 1080, 0.05, 0.8, 0.95, 0.95, "center", PNG))
    # When parsed
    cfg = parse_layout_db(gzip.compress(data))
    # Then crops are pixels: round(fraction * size)
    assert (cfg.crop_left, cfg.crop_top, cfg.crop_right, cfg.crop_bottom) == (96, 864, 1824, 1026)
    assert (cfg.frame_width, cfg.frame_height, cfg.anchor_type) == (1920, 1080, "center")
    assert cfg.ocr_visualization_png == PNG


def test_pixel_table_preferred_when_both_exist():
    pixel = build_layout_db(LayoutConfig(100, 50, 10, 20, 90, 45, "right", PNG))
    con = sqlite3.connect(":memory:")
    con.deserialize(pixel)
    con.executescript(NEW_TABLE.split(";;")[0])
    con.execute(NEW_TABLE.split(";;")[1], (100, 50, 0.5, 0.5, 0.6, 0.6, "left", PNG))
    con.commit()
    assert parse_layout_db(con.serialize()).crop_left == 10


@pytest.mark.parametrize("vals,match", [
    ((1920, 1080, 0.05, 0.8, 95.0, 0.95, "center", PNG), "layout_config.crop_right is a fraction"),
    ((1920, 1080, 0.05, 0.8, 0.95, 0.95, "center", None), "ocr_visualization_image is missing"),
    ((1920, 1080, 0.05, 0.8, 0.95, 0.95, "center", b""), "ocr_visualization_image is missing"),
    ((1920, 1080, 0.5, 0.8, 0.4, 0.95, "center", PNG), "empty or outside"),
    ((None, 1080, 0.05, 0.8, 0.95, 0.95, "center", PNG), "frame_width must be a number"),
])
def test_bad_layout_config_rows(vals, match):
    with pytest.raises(LayoutError, match=match):
        parse_layout_db(make_db(NEW_TABLE, vals))


def test_fractions_in_pixel_table_are_refused():
    data = build_layout_db(LayoutConfig(100, 50, 10, 20, 90, 45, "right", PNG))
    con = sqlite3.connect(":memory:")
    con.deserialize(data)
    con.execute("UPDATE video_layout_config SET crop_left = 0.1")
    con.commit()
    with pytest.raises(LayoutError, match="video_layout_config.crop_left must be integer pixels"):
        parse_layout_db(con.serialize())


def test_missing_row_and_missing_tables():
    empty_row = make_db("CREATE TABLE video_layout_config (id INTEGER PRIMARY KEY, frame_width INT)")
    with pytest.raises(LayoutError, match="video_layout_config has no row id=1"):
        parse_layout_db(empty_row, source="t/v/layout.db")
    other = make_db("CREATE TABLE frames_ocr (id INTEGER)")
    with pytest.raises(LayoutError, match="neither a video_layout_config nor a layout_config"):
        parse_layout_db(other)


@pytest.mark.parametrize("data,match", [
    (b"not a database at all", "not an SQLite database"),
    (b"\x1f\x8b\x08garbage", "gzip data does not decompress"),
    (gzip.compress(b"plain text"), "not an SQLite database"),
])
def test_not_a_database(data, match):
    with pytest.raises(LayoutError, match=match):
        parse_layout_db(data, source="k/layout.db.gz")
