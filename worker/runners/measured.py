"""A Runner wrapper that adds each batch's shard durations to the shared Redis counters
(config/shard_metrics.py) — the producer's ``/metrics`` exports them. Recording never fails a job: a
Redis error is logged (``shard.metrics_unrecorded``) and the results are returned as they are."""

from __future__ import annotations

import structlog

from boundaries.shards import ShardRequest, ShardSummary
from config.shard_metrics import record_shards
from worker.runners.base import Runner, ShardError

log = structlog.get_logger(__name__)


class MeasuredRunner:
    """``runner`` (any :class:`Runner`) whose ``map`` results are counted into Redis hash ``key``."""

    def __init__(self, runner: Runner, redis_client, key: str):
        self.runner, self.redis, self.key = runner, redis_client, key

    def map(self, requests: list[ShardRequest]) -> list[ShardSummary | ShardError]:
        results = self.runner.map(requests)
        done = [r for r in results if isinstance(r, ShardSummary)]
        if results:
            try:
                record_shards(self.redis, self.key, [r.seconds for r in done], sum(r.pairs for r in done),
                              errors=len(results) - len(done))
            except Exception as e:  # noqa: BLE001 - metrics must not fail a job
                log.warning("shard.metrics_unrecorded", error=f"{type(e).__name__}: {e}"[:300])
        return results

    def close(self) -> None:
        self.runner.close()

    def __getattr__(self, name):  # the wrapped runner's own attributes (workers, deadline_s …)
        return getattr(self.runner, name)
