"""One daemon-loop helper for the operator loops (``reconcile --loop``, ``sweep --loop``, due retries).

A pass runs at start and then every ``interval_s`` seconds until ``stop`` is set (SIGTERM/SIGINT set it
when the loop runs in the main thread: the process exits within one pass, never mid-sleep). Each pass
prints one JSON line (its result, or its error); an error ends only that pass. With a liveness file
(``BOUNDARIES_LIVENESS_FILE``) each pass that succeeds touches it, so a container healthcheck can test
its age (docker-compose.yml).
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)


def _print(obj: dict) -> None:
    print(json.dumps({**obj, "at": datetime.now(UTC).isoformat()}, default=str), flush=True)


def run_loop(name: str, one_pass: Callable[[], dict[str, Any]], *, interval_s: float, loop: bool = True,
             stop: threading.Event | None = None, echo: bool = True, liveness_file: Path | None = None) -> int:
    """Run ``one_pass`` (returns a JSON-able dict; an empty one is not printed while looping) once, or
    with ``loop`` every ``interval_s`` seconds until ``stop`` is set. Returns 0.

    ``liveness_file``: created or its mtime set to now after every pass that returned (not one that raised);
    its parent directory must exist.

    Raises:
        whatever ``one_pass`` raises when ``loop`` is False (one pass: the operator sees the error).
    """
    stop = stop or threading.Event()
    if loop and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        try:
            result = one_pass()
        except Exception as e:  # Redis, broker or registry unreachable: the loop survives it
            if not loop:
                raise
            log.warning(f"{name}.failed", error=f"{type(e).__name__}: {e}"[:500], retry_in_s=interval_s)
            if echo:
                _print({"error": f"{type(e).__name__}: {e}"[:500]})
        else:
            if liveness_file is not None:
                liveness_file.touch()
            if echo and (result or not loop):  # a looping pass with nothing to report stays quiet
                _print(result)
        if not loop:
            return 0
        stop.wait(interval_s)
    return 0
