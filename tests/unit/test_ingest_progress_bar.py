"""``boundaries ingest`` shows frames, rate and ETA on a terminal and writes nothing otherwise."""

from __future__ import annotations

import io

from rich.console import Console

from boundaries_cli.ingest_cmds import ingest_progress


def _drive(console: Console) -> None:
    with ingest_progress(console) as progress:
        task = progress.add_task("ingest", total=None)
        progress.update(task, total=600)
        for n in range(0, 601, 50):
            progress.update(task, completed=n)
        progress.refresh()


def test_progress_bar_on_a_terminal_shows_frames_rate_and_eta():
    out = io.StringIO()
    _drive(Console(file=out, force_terminal=True, width=120))
    text = out.getvalue()
    assert "600/600" in text and "frames" in text and "ETA" in text


def test_progress_bar_is_quiet_when_not_a_terminal():
    out = io.StringIO()
    _drive(Console(file=out, force_terminal=False))
    assert out.getvalue() == ""
