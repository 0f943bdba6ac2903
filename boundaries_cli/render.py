"""Output of the operator's read commands (``runs``, ``jobs``, ``dlq list|show``) and the caption-segment
table that ``boundaries run`` and ``boundaries runs show`` both print.

The rule, the same for every such command: a **table** (rich) when stdout is a terminal, **JSON**
otherwise (a pipe, a file, a script); ``--json`` or ``--table`` forces either. JSON goes to stdout
alone (``jq`` reads it); notices (a list cut by ``--limit``) go to stderr in both modes. Times in
JSON are ISO 8601 with their UTC offset.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from boundaries.segments import Segment

FORMAT_HELP = "output: a table on a terminal, JSON otherwise (pipes, files); --json / --table force either"
_WIDE = 240
"""Columns of a table written to something that is not a terminal (``--table`` into a pipe): wide
enough that a row of ids does not wrap."""


def add_format_flags(parser: argparse.ArgumentParser) -> None:
    """``--json`` / ``--table`` (mutually exclusive) on ``parser``; read back with :func:`wants_json`."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--json", dest="output", action="store_const", const="json",
                   help="JSON on stdout (the default when stdout is not a terminal)")
    g.add_argument("--table", dest="output", action="store_const", const="table",
                   help="a table (the default on a terminal)")


def wants_json(args: argparse.Namespace) -> bool:
    """JSON when ``--json`` was given, or neither flag was and stdout is not a terminal."""
    output = getattr(args, "output", None)
    return output == "json" if output else not sys.stdout.isatty()


def console() -> Console:
    """stdout console: the terminal's width on a terminal, :data:`_WIDE` columns otherwise."""
    return Console() if sys.stdout.isatty() else Console(width=_WIDE)


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    return str(v)  # UUID, Decimal, Path


def jsonable(obj: Any) -> Any:
    """``obj`` with datetimes as ISO 8601 strings and UUIDs as strings (plain JSON types only)."""
    return json.loads(json.dumps(obj, default=_json_default))


def print_json(obj: Any) -> None:
    print(json.dumps(obj, default=_json_default, indent=2))


def cell(v: Any) -> str:
    """A table cell: ``—`` for None, times in UTC to the second (``2026-12-01 02:49:47``), the rest as text."""
    if v is None:
        return "—"
    if isinstance(v, datetime):
        return (v.astimezone(UTC) if v.tzinfo else v).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def parsed_times(row: dict) -> dict:
    """``row`` with its ``*_at`` strings (ISO 8601, as stored in JSON columns) as datetimes, for :func:`cell`."""
    out = dict(row)
    for key, value in row.items():
        if key.endswith("_at") and isinstance(value, str):
            try:
                out[key] = datetime.fromisoformat(value)
            except ValueError:
                pass
    return out


def rows_table(rows: Iterable[dict], columns: Sequence[tuple[str, str]], *, title: str | None = None,
               ids: Sequence[str] = (), fold: Sequence[str] = (), width: int | None = None) -> Table:
    """A table of ``rows`` with ``columns`` = ``[(key, header), …]`` in order of importance, one line per row
    except in the ``fold`` columns (long text wrapped whole, e.g. an attempt's error in ``show``).

    The ``ids`` columns are never shortened (a UUID stays copyable). Within ``width`` (default: the stdout
    console's) columns are taken in order at their natural width: a long text column (over 20 characters)
    that does not fit is shortened with ``…`` to the room left (at least 10), any other column that does not
    fit is left out and the caption names it (``show`` and ``--json`` have every value whole). Times in UTC.
    """
    rows = list(rows)
    width = width or console().width
    cells = [[cell(r.get(key)) for key, _ in columns] for r in rows]
    used, kept, left_out = 1, [], []
    for i, (key, header) in enumerate(columns):
        natural = max([len(header), *(len(c[i]) for c in cells)])
        need = (min(natural, 20) if key in fold else natural) + 3  # padding 2 + border 1
        room = width - used - 3
        if used + need <= width:
            kept.append((i, key, header, None if key in fold else need - 3))
            used += need
        elif key not in ids and key not in fold and natural > 20 and room >= 10:
            kept.append((i, key, header, room))
            used = width
        else:
            left_out.append(header)
    caption = "times in UTC" + (f"; not shown (narrow terminal): {', '.join(left_out)}" if left_out else "")
    table = Table(title=title, caption=caption)
    for _, key, header, w in kept:
        if key in fold:
            table.add_column(header, overflow="fold", min_width=20)
        else:
            table.add_column(header, no_wrap=True, overflow="ellipsis", min_width=w if key in ids else None,
                             max_width=w)
    for c in cells:
        table.add_row(*(c[i] for i, *_ in kept))
    return table


def fields_table(row: dict, *, title: str | None = None, skip: Sequence[str] = ()) -> Table:
    """One record as a two-column ``field | value`` table (every key of ``row`` except ``skip``)."""
    table = Table(title=title, show_header=False, caption="times in UTC")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in row.items():
        if key not in skip:
            table.add_row(key, cell(value))
    return table


def segment_rows(segments: Sequence[Segment], fps: float = 10.0) -> list[dict]:
    """The caption segments as JSON rows: ``first_frame``/``last_frame`` (inclusive frame indices) and
    ``start_s``/``end_s`` (seconds at ``fps``; end exclusive, :meth:`Segment.times`)."""
    out = []
    for seg in segments:
        start, end = seg.times(fps)
        out.append({"first_frame": seg.first_frame, "last_frame": seg.last_frame, "start_s": round(start, 3),
                    "end_s": round(end, 3)})
    return out


def segment_table(segments: Sequence[Segment], fps: float = 10.0) -> Table:
    """The ``caption segments`` table of ``boundaries run`` and ``boundaries runs show``: number, start and
    end in seconds (one decimal, at ``fps``), first–last frame."""
    table = Table(title="caption segments", show_lines=False)
    for col in ("#", "start (s)", "end (s)", "frames"):
        table.add_column(col, justify="right")
    for i, seg in enumerate(segments, 1):
        start, end = seg.times(fps)
        table.add_row(str(i), f"{start:.1f}", f"{end:.1f}", f"{seg.first_frame}–{seg.last_frame}")
    return table


def limit_arg(text: str) -> int:
    """argparse type for ``--limit``: a whole number >= 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return n


def cut_notice(command: str, shown: int, total: int, limit: int, noun: str, order: str) -> None:
    """Tell stderr that ``--limit`` cut a list: ``shown`` of ``total`` matching ``noun``, in ``order``."""
    print(f"{command}: showing the {order} {shown} of {total} matching {noun} (cut by --limit {limit}; raise"
          " --limit or narrow the filters)", file=sys.stderr)


def print_list(args, rows: list[dict], total: int, *, command: str, noun: str, order: str, columns,
               id_columns: tuple[str, ...]) -> None:
    """Print a list command's ``rows`` (``total``: how many match in all): the cut notice on stderr when
    ``--limit`` cut it, then JSON (an array) or a table per :func:`wants_json`."""
    if total > len(rows):
        cut_notice(command, len(rows), total, args.limit, noun, order)
    if wants_json(args):
        print_json(rows)
    else:
        console().print(rows_table(rows, columns, title=f"{noun} ({len(rows)} of {total})", ids=id_columns))
