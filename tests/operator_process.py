"""A command run as an operator runs it from a terminal, for tests that press Ctrl-C on it."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


def _sigint_default() -> None:
    """preexec_fn: SIGINT back to its default in the child. A test run started in the background of a
    non-interactive shell inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler:
    an operator's Ctrl-C reaches a foreground process, which is what these tests stand for."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def operator_process(argv: list[str], **popen) -> Iterator[subprocess.Popen]:
    """``argv`` started with text pipes for stdout and stderr and SIGINT at its default; killed at the end
    of the block if it is still running (a failed assertion never leaves it behind)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default, **popen)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def ctrl_c(proc: subprocess.Popen, timeout_s: float = 30) -> tuple[str, str]:
    """Send SIGINT (the operator's Ctrl-C) and wait for the exit. Returns (stdout, stderr)."""
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=timeout_s)
