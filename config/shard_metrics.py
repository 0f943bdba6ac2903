"""Shard durations, shared by every worker process through one Redis hash (written by the workers,
read by the producer's ``/metrics`` at scrape time: right however many workers and producers run).

Key: ``boundaries:{db_schema}:metrics:shards`` (:func:`shard_metrics_key`), a hash of cumulative
counters: ``count`` (shards finished), ``sum`` (their seconds), ``pairs`` (their frame pairs),
``errors`` (shards that failed) and ``le:{bound}`` (shards that took at most ``bound`` seconds, one field
per bound of :data:`SHARD_BUCKETS_S`). The key never expires; its counters only grow.
"""

from __future__ import annotations

from collections.abc import Iterable

SHARD_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
"""Upper bounds (seconds) of the shard-duration histogram buckets (shards take seconds to minutes)."""


def shard_metrics_key(db_schema: str) -> str:
    """The Redis hash of the shard counters of one registry schema (one deployment)."""
    return f"boundaries:{db_schema}:metrics:shards"


def record_shards(redis_client, key: str, seconds: Iterable[float], pairs: int, errors: int = 0) -> None:
    """Add finished shards (their durations in seconds and total frame pairs) and failed shards to the hash
    ``key`` in one round trip. Raises redis-py errors (callers that must not fail swallow them)."""
    seconds = list(seconds)
    pipe = redis_client.pipeline(transaction=False)
    for s in seconds:
        for bound in SHARD_BUCKETS_S:
            if s <= bound:
                pipe.hincrby(key, f"le:{bound:g}", 1)
    if seconds:
        pipe.hincrby(key, "count", len(seconds))
        pipe.hincrbyfloat(key, "sum", float(sum(seconds)))
        pipe.hincrby(key, "pairs", int(pairs))
    if errors:
        pipe.hincrby(key, "errors", int(errors))
    pipe.execute()


def read_shards(redis_client, key: str) -> dict:
    """The counters of hash ``key``: ``{"count", "sum", "pairs", "errors", "buckets": [(bound, cumulative
    count), …, (inf, count)]}`` (zeros when no shard finished yet)."""
    raw = {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in redis_client.hgetall(key).items()}
    count = raw.get("count", 0.0)
    buckets = [(bound, raw.get(f"le:{bound:g}", 0.0)) for bound in SHARD_BUCKETS_S] + [(float("inf"), count)]
    return {"count": count, "sum": raw.get("sum", 0.0), "pairs": raw.get("pairs", 0.0),
            "errors": raw.get("errors", 0.0), "buckets": buckets}
