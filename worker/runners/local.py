"""Local runner: a process pool calling the same shard function Modal runs (no GPU needed)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from boundaries.shards import ShardRequest, ShardSummary
from worker.runners.base import ShardError, shard_error_from


def _run(request: dict) -> dict:
    from modal_gpu.shard import run_shard  # imported in the child: the worker never imports torch

    return run_shard(request)


class LocalRunner:
    """``workers`` child processes (spawned, so no forked sockets or threads); each loads the predictor
    once and keeps it for every shard it runs."""

    def __init__(self, workers: int = 2):
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def map(self, requests: list[ShardRequest]) -> list[ShardSummary | ShardError]:
        if not requests:
            return []
        pool = self._executor()
        futures = [pool.submit(_run, r.model_dump(mode="json")) for r in requests]
        out: list[ShardSummary | ShardError] = []
        for req, fut in zip(requests, futures, strict=True):
            try:
                out.append(ShardSummary.model_validate(fut.result()))
            except BaseException as e:  # noqa: BLE001 — a shard's failure is data, not a crash of the job
                if isinstance(e, KeyboardInterrupt):
                    raise
                out.append(shard_error_from(req.shard_id, e))
                if type(e).__name__ == "BrokenProcessPool":
                    self._pool = None
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
