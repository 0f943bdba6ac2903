"""The tables of ``runs``, ``jobs`` and ``dlq`` (boundaries_cli/render.py): ids stay whole on a narrow
terminal, columns that do not fit are named, long text is shortened or wrapped, never lost silently; the
caption-segment table of ``boundaries run``."""

from __future__ import annotations

import io
import uuid
from datetime import datetime, timedelta, timezone

from rich.console import Console

from boundaries.segments import Segment
from boundaries_cli.render import rows_table, segment_rows, segment_table

COLUMNS = [("id", "job id"), ("status", "status"), ("created_at", "created"), ("error_message", "error"),
           ("video_id", "video"), ("model_version", "model")]


def text(table, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def rows(n: int = 3) -> list[dict]:
    return [{"id": str(uuid.uuid4()), "status": "failed", "video_id": str(uuid.uuid4()),
             "model_version": "classical-v3",
             "created_at": datetime(2026, 12, 1, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
             "error_message": "layout_error: LayoutError: layout.db: not an SQLite database; re-run layout analysis"}
            for _ in range(n)]


def test_a_narrow_terminal_keeps_ids_whole_and_names_what_it_left_out():
    data = rows()
    narrow = text(rows_table(data, COLUMNS, ids=("id",), width=80), 80)
    wide = text(rows_table(data, COLUMNS, ids=("id",), width=240), 240)

    assert all(r["id"] in narrow for r in data)
    assert "not shown (narrow terminal)" in narrow and "model" in narrow.split("not shown")[1]
    assert "2026-12-01 01:04:05" in narrow  # UTC, to the second
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert all(r["id"] in wide and r["video_id"] in wide and r["error_message"] in wide for r in data)
    assert "not shown" not in wide


def test_long_text_is_shortened_in_lists_and_wrapped_whole_where_folded():
    data = rows(1)
    columns = [("id", "job id"), ("error_message", "error")]
    short = text(rows_table(data, columns, ids=("id",), width=70), 70)
    folded = text(rows_table(data, columns, ids=("id",), fold=("error_message",), width=70), 70)

    assert "…" in short and "layout_error" in short
    assert "analysis" in folded and "…" not in folded  # every word of the error is there


def test_segment_table_and_rows_agree_on_times_and_frames():
    segments = [Segment(0, 14), Segment(20, 41)]
    table = text(segment_table(segments), 100)

    assert segment_rows(segments) == [{"first_frame": 0, "last_frame": 14, "start_s": 0.0, "end_s": 1.5},
                                      {"first_frame": 20, "last_frame": 41, "start_s": 2.0, "end_s": 4.2}]
    assert "0–14" in table and "20–41" in table and "1.5" in table and "4.2" in table
