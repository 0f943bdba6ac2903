"""Local runner: a process pool calling the same shard function Modal runs (no GPU needed)."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

from boundaries.shards import ShardRequest, ShardSummary
from worker.runners.base import ShardError, shard_error_from


def _run(request: dict) -> dict:
    from modal_gpu.shard import run_shard  # imported in the child: the worker never imports torch

    return run_shard(request)


class LocalRunner:
    """``workers`` child processes (spawned, so no forked sockets or threads); each loads the predictor
    once and keeps it for every shard it runs.

    ``deadline_s``: seconds one ``map`` call may take; shards unfinished by then become transient
    ``deadline_exceeded`` ShardErrors and the pool's processes are killed (a running shard cannot be
    cancelled otherwise). A child that dies (kill -9, OOM) fails the shards still in the pool as
    transient errors and the pool is rebuilt on the next call.
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
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
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
                if isinstance(e, KeyboardInterrupt):
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
