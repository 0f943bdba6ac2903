"""Prometheus metrics of the producer, on a per-app :class:`CollectorRegistry` (no global state, so
several apps — e.g. tests — can live in one process).

Counters (labels in brackets; ``reason`` is a short fixed code, never payload text):
``boundaries_webhooks_received_total``, ``…_accepted_total``, ``…_ignored_total[reason]``,
``…_rejected_total[reason]`` (401/4xx/503), ``…_duplicate_total``; histogram
``boundaries_webhook_enqueue_seconds`` (seconds spent in the idempotent enqueue).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ProducerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
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
        """The text exposition format of every metric of this registry."""
        return generate_latest(self.registry)
