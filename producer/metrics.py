"""Prometheus metrics of the producer, on a per-app :class:`CollectorRegistry` (no global state, so
several apps — e.g. tests — can live in one process).

Webhook counters (labels in brackets; ``reason`` is a short fixed code, never payload text):
``boundaries_webhooks_received_total``, ``…_accepted_total``, ``…_ignored_total[reason]``,
``…_rejected_total[reason]`` (401/4xx/503), ``…_duplicate_total``; histogram
``boundaries_webhook_enqueue_seconds`` (seconds spent in the idempotent enqueue). These are counted in
the process that answered the webhook. With several producer processes on one host (``uvicorn --workers
N``) set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory, writable, shared by those processes and
emptied before they start: prometheus_client then keeps the counters in files there and every process's
``/metrics`` reports their sum (its multiprocess mode; the variable must be set before Python starts).
Producers on different hosts are summed by Prometheus (``sum without (instance)``).

Job-lifecycle metrics (producer/lifecycle_metrics.py) are read from PostgreSQL and Redis at scrape time:
the same in every producer process, with or without ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ProducerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None, *, collectors: tuple = ()):
        """``collectors``: extra custom collectors exported with these counters (the lifecycle collector)."""
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.collectors = tuple(collectors)
        r = self.registry
        self.received = Counter("boundaries_webhooks_received", "Webhook requests received", registry=r)
        self.accepted = Counter("boundaries_webhooks_accepted", "Webhooks that queued a job", registry=r)
        self.ignored = Counter("boundaries_webhooks_ignored", "Webhooks that are not a frames-cropped event",
                               ["reason"], registry=r)
        self.rejected = Counter("boundaries_webhooks_rejected", "Webhooks refused (401/4xx/503)",
                                ["reason"], registry=r)
        self.duplicate = Counter("boundaries_webhooks_duplicate", "Webhooks whose job already exists",
                                 registry=r)
        self.enqueue_latency = Histogram("boundaries_webhook_enqueue_seconds",
                                         "Seconds spent in the idempotent enqueue",
                                         buckets=_LATENCY_BUCKETS_S, registry=r)

    def render(self) -> bytes:
        """The text exposition format of the webhook counters (summed over this host's producer processes
        in multiprocess mode) and of the extra collectors. Blocking (the lifecycle collector queries
        PostgreSQL and Redis): call it in a thread."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        else:
            registry = CollectorRegistry()
            registry.register(_Only(self.registry))
        for collector in self.collectors:
            registry.register(collector)
        return generate_latest(registry)


class _Only:
    """The metrics of another registry, as one collector (so extra collectors need not join it)."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self):
        return self.registry.collect()
