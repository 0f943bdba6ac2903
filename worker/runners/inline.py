"""Inline runner: runs shards one after another in this process (evaluation, debugging, unit tests).

Takes an already-loaded predictor, so nothing is loaded per shard.
"""

from __future__ import annotations

from boundaries.shards import ShardRequest, ShardSummary
from modal_gpu.predictor import PairPredictor
from worker.runners.base import ShardError, shard_error_from


class InlineRunner:
    def __init__(self, predictor: PairPredictor | None = None):
        self.predictor = predictor
        self.calls = 0

    def map(self, requests: list[ShardRequest]) -> list[ShardSummary | ShardError]:
        from modal_gpu.shard import run_shard

        out: list[ShardSummary | ShardError] = []
        for req in requests:
            self.calls += 1
            try:
                out.append(ShardSummary.model_validate(run_shard(req, self.predictor)))
            except Exception as e:
                out.append(shard_error_from(req.shard_id, e))
        return out

    def close(self) -> None:
        pass
