"""The operator loops (``reconcile --loop``, ``sweep --loop``) touch BOUNDARIES_LIVENESS_FILE after each
pass that succeeded, and only then: the compose healthcheck of the reconciler and sweeper tests its age."""

from __future__ import annotations

import os
import threading

import pytest

from boundaries_cli.loops import run_loop


def test_a_successful_pass_creates_the_file_and_refreshes_its_time(tmp_path):
    f = tmp_path / "alive"
    run_loop("t", lambda: {}, interval_s=1, loop=False, echo=False, liveness_file=f)
    assert f.is_file()

    os.utime(f, (1_000_000, 1_000_000))  # an old pass
    run_loop("t", lambda: {}, interval_s=1, loop=False, echo=False, liveness_file=f)
    assert f.stat().st_mtime > 1_000_000


def test_failing_passes_leave_the_file_alone(tmp_path):
    f = tmp_path / "alive"
    stop = threading.Event()
    passes = []

    def failing_pass():
        passes.append(1)
        if len(passes) == 2:
            stop.set()
        raise ConnectionError("redis down")

    run_loop("t", failing_pass, interval_s=0, loop=True, stop=stop, echo=False, liveness_file=f)
    assert len(passes) == 2 and not f.exists()

    f.touch()
    os.utime(f, (1_000_000, 1_000_000))
    with pytest.raises(ConnectionError):  # one pass (no --loop): the operator sees the error
        run_loop("t", failing_pass, interval_s=0, loop=False, echo=False, liveness_file=f)
    assert f.stat().st_mtime == 1_000_000


def test_no_setting_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_loop("t", lambda: {}, interval_s=1, loop=False, echo=False)
    assert list(tmp_path.iterdir()) == []
