"""Job-lifecycle metrics, read at scrape time from the shared state — PostgreSQL (the registry) and
Redis (the broker's queues, the workers' shard counters) — so every producer process reports the same
numbers however many producers, workers and loops run, and nothing is lost when a process restarts.

One scrape = 4 statements on one pooled registry connection (each a single pass with GROUP BY /
FILTER; bounded by the producer's ``statement_timeout``) + one Redis pipeline. Measured cost: see the
README's "Metrics and logs". Counters are cumulative over the rows that exist: deleting rows (a job
released to the reconciler deletes its attempts) lowers them, which Prometheus treats as a counter reset.

Metrics (labels in brackets):

===========================================  ======================================================
``boundaries_jobs[status]``                   gauge: job rows now queued / running / completed / failed
``boundaries_jobs_waiting_retry``             gauge: queued jobs waiting for a retry's ``retry_at``
``boundaries_job_attempts_started_total``     counter: attempts started (a worker claimed the job)
``boundaries_job_attempts_total[outcome]``    counter: attempts finished, by outcome (completed, retry,
                                              failed, rejected, abandoned, not_active)
``boundaries_attempt_duration_seconds``       histogram [outcome]: seconds from claim to outcome
``boundaries_dead_letters_total``             counter: dead letters written
``boundaries_dead_letters_pending``           gauge: dead letters not replayed
``boundaries_runs_total``                     counter: results published (one per completed job)
``boundaries_pairs_total``                    counter: frame pairs in published results
``boundaries_run_seconds_total``              counter: the runs' processing seconds
``boundaries_pairs_per_second``               gauge: pairs / processing seconds of the runs completed in
                                              the last ``window_s`` seconds (0 when none)
``boundaries_shard_duration_seconds``         histogram: seconds per finished shard (all workers)
``boundaries_shard_pairs_total``              counter: frame pairs of finished shards
``boundaries_shard_errors_total``             counter: shards that failed
``boundaries_queue_depth[queue,priority]``    gauge: messages waiting in the broker queue (Redis LLEN)
``boundaries_lifecycle_source_up[source]``    gauge: 1 when the registry / redis read succeeded
===========================================  ======================================================

A source that cannot be read within its timeout leaves its metrics out of that scrape and sets
``boundaries_lifecycle_source_up{source=…} 0`` (the scrape itself still answers 200).
"""

from __future__ import annotations

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from config.shard_metrics import read_shards, shard_metrics_key

log = structlog.get_logger(__name__)

ATTEMPT_BUCKETS_S = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Upper bounds (seconds) of the attempt-duration histogram buckets (an attempt is one job's run)."""
JOB_STATUSES = ("queued", "running", "completed", "failed")
PRIORITY_STEPS = (0, 3, 6, 9)
"""kombu's default Redis priority steps: priority p>0 lives in the list ``{queue}\\x06\\x16{p}``."""

_BUCKET_COLUMNS = ", ".join(  # interval comparisons: several times cheaper than extract(epoch …) per row
    f"count(*) FILTER (WHERE finished_at - started_at <= interval '{b:g} seconds') AS le_{i}"
    for i, b in enumerate(ATTEMPT_BUCKETS_S))
_QUERIES = {
    "jobs": "SELECT status, count(*) AS n, count(*) FILTER (WHERE retry_at IS NOT NULL) AS waiting_retry"
            " FROM boundary_inference_jobs GROUP BY status",
    "attempts": "SELECT outcome, count(*) AS n,"
                " COALESCE(extract(epoch FROM sum(finished_at - started_at)), 0)::float8 AS seconds,"
                f" {_BUCKET_COLUMNS} FROM boundary_inference_job_attempts GROUP BY outcome",
    "dead_letters": "SELECT count(*) AS n, count(*) FILTER (WHERE replayed_at IS NULL) AS pending"
                    " FROM boundary_inference_dead_letters",
    "runs": "SELECT count(*) AS n, COALESCE(sum(total_pairs), 0)::float8 AS pairs,"
            " COALESCE(sum(processing_time_seconds), 0)::float8 AS seconds,"
            " COALESCE(sum(total_pairs) FILTER (WHERE completed_at > now() - make_interval(secs => %(w)s)), 0)"
            "::float8 AS recent_pairs,"
            " COALESCE(sum(processing_time_seconds) FILTER (WHERE completed_at > now() - make_interval(secs => %(w)s)),"
            " 0)::float8 AS recent_seconds FROM boundary_inference_runs",
}


def queue_keys(queue: str) -> list[str]:
    """The Redis lists kombu keeps for ``queue`` (one per priority step; step 0 is the queue's name)."""
    return [queue] + [f"{queue}\x06\x16{p}" for p in PRIORITY_STEPS[1:]]


class LifecycleCollector(Collector):
    """A prometheus_client custom collector reading the registry (``registry.db``) and Redis
    (``redis_client``) on every ``collect`` (i.e. every scrape; call it off the event loop).

    Args:
        queues: ``{"high": queue name, "low": queue name}`` (settings.queue_high / queue_low).
        db_schema: the registry schema (names the shard-counter hash).
        window_s: seconds of recent runs behind ``boundaries_pairs_per_second``.
    """

    def __init__(self, registry, redis_client, *, queues: dict[str, str], db_schema: str, window_s: float = 3600.0):
        self.registry, self.redis, self.queues = registry, redis_client, queues
        self.shard_key, self.window_s = shard_metrics_key(db_schema), window_s

    def describe(self):
        return []  # no fixed description: collect() reads services, never at registration

    def collect(self):
        up = GaugeMetricFamily("boundaries_lifecycle_source_up", "1 when the source was read in this scrape",
                               labels=["source"])
        try:
            rows = self._read_registry()
        except Exception as e:  # noqa: BLE001 - a scrape reports a down source, it does not fail
            log.warning("metrics.registry_unavailable", error=f"{type(e).__name__}: {e}"[:300])
            up.add_metric(["registry"], 0)
        else:
            up.add_metric(["registry"], 1)
            yield from self._registry_metrics(rows)
        try:
            depths, shards = self._read_redis()
        except Exception as e:  # noqa: BLE001
            log.warning("metrics.redis_unavailable", error=f"{type(e).__name__}: {e}"[:300])
            up.add_metric(["redis"], 0)
        else:
            up.add_metric(["redis"], 1)
            yield from self._redis_metrics(depths, shards)
        yield up

    def _read_registry(self) -> dict:
        with self.registry.db.connection() as c:
            return {name: c.execute(q, {"w": self.window_s} if "%(w)s" in q else None).fetchall()
                    for name, q in _QUERIES.items()}

    def _read_redis(self) -> tuple[dict, dict]:
        pipe = self.redis.pipeline(transaction=False)
        for queue in self.queues.values():
            for key in queue_keys(queue):
                pipe.llen(key)
        lengths = pipe.execute()
        depths, n = {}, len(PRIORITY_STEPS)
        for i, (priority, queue) in enumerate(self.queues.items()):
            depths[(queue, priority)] = sum(lengths[i * n:(i + 1) * n])
        return depths, read_shards(self.redis, self.shard_key)

    def _registry_metrics(self, rows: dict):
        jobs = GaugeMetricFamily("boundaries_jobs", "Job rows by status", labels=["status"])
        by_status = {r["status"]: r for r in rows["jobs"]}
        for status in JOB_STATUSES:
            jobs.add_metric([status], by_status[status]["n"] if status in by_status else 0)
        yield jobs
        yield GaugeMetricFamily("boundaries_jobs_waiting_retry", "Queued jobs waiting for their retry_at",
                                value=sum(r["waiting_retry"] for r in rows["jobs"] if r["status"] == "queued"))
        yield CounterMetricFamily("boundaries_job_attempts_started", "Attempts started (claims)",
                                  value=sum(r["n"] for r in rows["attempts"]))  # running ones included
        finished = CounterMetricFamily("boundaries_job_attempts", "Attempts finished, by outcome", labels=["outcome"])
        durations = HistogramMetricFamily("boundaries_attempt_duration_seconds",
                                          "Seconds from claim to outcome of finished attempts", labels=["outcome"])
        for r in rows["attempts"]:
            if r["outcome"] is None:  # still running
                continue
            finished.add_metric([r["outcome"]], r["n"])
            buckets = [(floatToGoString(b), r[f"le_{i}"]) for i, b in enumerate(ATTEMPT_BUCKETS_S)]
            durations.add_metric([r["outcome"]], [*buckets, ("+Inf", r["n"])], sum_value=r["seconds"])
        yield finished
        yield durations
        dl = rows["dead_letters"][0]
        yield CounterMetricFamily("boundaries_dead_letters", "Dead letters written", value=dl["n"])
        yield GaugeMetricFamily("boundaries_dead_letters_pending", "Dead letters not replayed", value=dl["pending"])
        runs = rows["runs"][0]
        yield CounterMetricFamily("boundaries_runs", "Results published", value=runs["n"])
        yield CounterMetricFamily("boundaries_pairs", "Frame pairs in published results", value=runs["pairs"])
        yield CounterMetricFamily("boundaries_run_seconds", "Processing seconds of published results",
                                  value=runs["seconds"])
        rate = runs["recent_pairs"] / runs["recent_seconds"] if runs["recent_seconds"] > 0 else 0.0
        yield GaugeMetricFamily("boundaries_pairs_per_second",
                                f"Pairs per processing second of runs completed in the last {self.window_s:g} s",
                                value=rate)

    def _redis_metrics(self, depths: dict, shards: dict):
        depth = GaugeMetricFamily("boundaries_queue_depth", "Messages waiting in the broker queue",
                                  labels=["queue", "priority"])
        for (queue, priority), n in depths.items():
            depth.add_metric([queue, priority], n)
        yield depth
        hist = HistogramMetricFamily("boundaries_shard_duration_seconds", "Seconds per finished shard (all workers)")
        hist.add_metric([], [(floatToGoString(b), v) for b, v in shards["buckets"]],
                        sum_value=shards["sum"])
        yield hist
        yield CounterMetricFamily("boundaries_shard_pairs", "Frame pairs of finished shards", value=shards["pairs"])
        yield CounterMetricFamily("boundaries_shard_errors", "Shards that failed", value=shards["errors"])
