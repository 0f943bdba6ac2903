"""Local runner: a process pool calling the same shard function Modal runs (no GPU needed).

Children die with their worker: a worker killed with SIGKILL (OOM killer, kill -9) runs no clean-up,
and its children, busy in a shard or blocked on the pool's queue, used to live on (157 MB each, for
more than 12 minutes). Each child therefore (1) asks Linux to SIGKILL it when its parent dies
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``, via ctypes) and (2) runs a watchdog thread that exits the
process when its parent is gone (the parent's sentinel pipe closes, or ``getppid`` changes): the
fallback where prctl is missing (not Linux) or the child was blocked in C code holding the GIL.
Children log like their worker (the same initializer configures logging: JSON off a terminal, at
``BOUNDARIES_LOG_LEVEL``, which the worker exports).
PDEATHSIG fires when the *thread* that started the child exits, so ``map`` must be called from a
thread that lives as long as the runner (the Celery worker's main thread does).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from boundaries.shards import ShardRequest, ShardSummary
from worker.runners.base import ShardError, shard_error_from

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCHDOG_POLL_S = 1.0
"""Seconds between the watchdog's parent-pid checks (the sentinel wakes it at once)."""


def _die_with_parent(parent_pid: int) -> None:
    """ProcessPoolExecutor initializer, run in each child: log as the worker does (JSON off a terminal, at
    ``BOUNDARIES_LOG_LEVEL``, config/logging.py; a spawned child starts with no logging set up) and
    arrange to exit when ``parent_pid`` dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    parent = multiprocessing.parent_process()
    sentinel = parent.sentinel if parent is not None else None

    def watch() -> None:
        while os.getppid() == parent_pid:
            if sentinel is not None:
                with contextlib.suppress(OSError, ValueError):
                    if multiprocessing.connection.wait([sentinel], timeout=WATCHDOG_POLL_S):
                        break
            else:
                time.sleep(WATCHDOG_POLL_S)
        os._exit(1)  # no clean-up: the worker that wanted the result is gone

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
    from config.logging import configure_logging

    configure_logging()


def _run(request: dict) -> dict:
    from modal_gpu.shard import run_shard  # imported in the child: the worker never imports torch

    return run_shard(request)


class LocalRunner:
    """``workers`` child processes (spawned, so no forked sockets or threads); each loads the predictor
    once and keeps it for every shard it runs.

    ``deadline_s``: seconds one ``map`` call may take; shards unfinished by then become transient
    ``deadline_exceeded`` ShardErrors and the pool's processes are killed (a running shard cannot be
    cancelled otherwise). A child that dies (kill -9, OOM) fails the shards still in the pool as
    transient errors and the pool is rebuilt on the next call. Children exit when the worker process
    dies, however it dies (module docstring). An interrupt of ``map`` (SIGTERM's shutdown, Ctrl+C)
    kills the children and propagates.
    """

    target = staticmethod(_run)
    """The function a child runs per request (a JSON dict -> ``ShardSummary`` dict); module-level, picklable."""

    def __init__(self, workers: int = 2, *, deadline_s: float | None = None):
        if deadline_s is not None and deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0 seconds, got {deadline_s}")
        self.workers = workers
        self.deadline_s = deadline_s
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_die_with_parent, initargs=(os.getpid(),))
        return self._pool

    def map(self, requests: list[ShardRequest]) -> list[ShardSummary | ShardError]:
        if not requests:
            return []
        pool = self._executor()
        deadline = None if self.deadline_s is None else time.monotonic() + self.deadline_s
        futures = [pool.submit(self.target, r.model_dump(mode="json")) for r in requests]
        out: list[ShardSummary | ShardError] = []
        timed_out = False
        for req, fut in zip(requests, futures, strict=True):
            try:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                out.append(ShardSummary.model_validate(fut.result(timeout=timeout)))
            except TimeoutError:
                timed_out = True
                out.append(ShardError(req.shard_id, "deadline_exceeded", f"shard {req.shard_id} unfinished after "
                                      f"the {self.deadline_s} s runner deadline", permanent=False))
            except BaseException as e:  # noqa: BLE001 — a shard's failure is data, not a crash of the job
                if not (fut.done() and fut.exception() is e) or isinstance(e, KeyboardInterrupt):
                    self._kill()  # interrupted while waiting (shutdown): the shards must not outlive it
                    raise
                out.append(shard_error_from(req.shard_id, e))
                if type(e).__name__ == "BrokenProcessPool":
                    self._pool = None
        if timed_out:
            self._kill()
        return out

    def _kill(self) -> None:
        """Kill the pool's processes (shards past the deadline) and forget the pool."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
