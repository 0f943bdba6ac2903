"""Celery app factory: one place where broker, queues and reliability settings are set.

Reliability (ARCHITECTURE.md): ``acks_late`` + ``reject_on_worker_lost`` so a crashed worker's
message is redelivered; prefetch 1; the Redis visibility timeout is the same value for the broker
and the result backend and longer than the task time limit (the longest job).
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from config.settings import Settings


def celery_broker_url(redis_url: str) -> str:
    """kombu spelling of a Redis URL (``unix:///path`` -> ``redis+socket:///path``)."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://"):]
    return redis_url


def redis_py_url(redis_url: str) -> str:
    """redis-py spelling of a Redis URL (``redis+socket:///path`` -> ``unix:///path``)."""
    if redis_url.startswith("redis+socket://"):
        return "unix://" + redis_url[len("redis+socket://"):]
    return redis_url


def make_celery(settings: Settings) -> Celery:
    if not settings.redis_url:
        raise ValueError("redis_url is not set (BOUNDARIES_REDIS_URL); the CLI starts an embedded Redis")
    if settings.visibility_timeout_s <= settings.task_time_limit_s:
        raise ValueError(
            f"visibility_timeout_s ({settings.visibility_timeout_s}) must exceed task_time_limit_s "
            f"({settings.task_time_limit_s}), else a running job is redelivered to a second worker"
        )
    broker = celery_broker_url(settings.redis_url)
    app = Celery("boundaries", broker=broker, set_as_current=False)
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_acks_on_failure_or_timeout=True,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_queues=[Queue(settings.queue_high), Queue(settings.queue_low)],
        task_default_queue=settings.queue_low,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def queue_for(settings: Settings, priority: str) -> str:
    return settings.queue_high if priority == "high" else settings.queue_low
