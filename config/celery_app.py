"""Celery app factory: one place where broker, queues and reliability settings are set.

Reliability (ARCHITECTURE.md): ``acks_late`` + ``reject_on_worker_lost`` so a crashed worker's
message is redelivered; prefetch 1; the Redis visibility timeout is the same value for the broker
and the result backend and longer than the task time limit (the longest job).

Task events are on (``worker_send_task_events``, ``task_send_sent_event``) so Flower and ``celery events``
see every task; the task id of a job's message is the job id (producer/dispatch.py).

Every broker socket has a connect and a read timeout and a health check (settings ``broker_*``): a
broker that accepts TCP and never answers (a wrong port behind a proxy, ``rediss://`` pointed at a
plain Redis) fails each command within seconds instead of hanging the worker. A ``rediss://`` URL must
say how to check the server's certificate (``ssl_cert_reqs``); kombu would otherwise turn the check off.
"""

from __future__ import annotations

import ssl
from urllib.parse import parse_qs, urlsplit

from celery import Celery
from kombu import Queue
from kombu.utils.url import maybe_sanitize_url

from config.settings import Settings

_CERT_REQS = {"required": ssl.CERT_REQUIRED, "cert_required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL,
              "cert_optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE, "cert_none": ssl.CERT_NONE}


def masked_url(url: str) -> str:
    """The URL with its password replaced by ``**`` (for messages and logs)."""
    return maybe_sanitize_url(url)


def broker_ssl_options(redis_url: str) -> dict | None:
    """TLS options of a ``rediss://`` broker URL, from its query (``ssl_cert_reqs`` = required | optional |
    none, optional ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``), in the form of Celery's
    ``broker_use_ssl``; None for any other scheme.

    Raises:
        ValueError: ``rediss://`` without ``ssl_cert_reqs``, or an unknown value of it (one line, naming
            BOUNDARIES_REDIS_URL with its password masked).
    """
    parts = urlsplit(redis_url)
    if parts.scheme != "rediss":
        return None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    reqs = query.get("ssl_cert_reqs", "")
    if reqs.lower() not in _CERT_REQS:
        got = f"ssl_cert_reqs={reqs!r}" if reqs else "no ssl_cert_reqs"
        raise ValueError(f"BOUNDARIES_REDIS_URL={masked_url(redis_url)} is rediss:// with {got}: add "
                         "?ssl_cert_reqs=required (and ssl_ca_certs=/path/ca.pem for a private CA), or "
                         "ssl_cert_reqs=none to turn certificate checks off knowingly")
    options = {"ssl_cert_reqs": _CERT_REQS[reqs.lower()]}
    options |= {k: query[k] for k in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile") if query.get(k)}
    return options

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


def check_timing(settings: Settings) -> None:
    """Refuse timing settings that could run a job twice or lose it (all values in seconds).

    Relations: runner deadlines (local, Modal) < task_soft_time_limit_s < task_time_limit_s <
    visibility_timeout_s (a live job is never redelivered); heartbeat_interval_s < heartbeat_stale_s <
    visibility_timeout_s (a dead worker's job is claimable when its message comes back);
    retry_backoff_base_s <= retry_backoff_max_s. A retry's back-off is not bounded by the visibility timeout
    or the sweep: a waiting retry is a ``queued`` row with ``retry_at`` in PostgreSQL, not a message held by
    a worker, and the sweep skips rows whose ``retry_at`` is in the future (registry/jobs.py ``requeue``).

    Raises:
        ValueError: naming the two settings and their values.
    """
    s = settings
    pairs = [
        ("local_runner_deadline_s", s.local_runner_deadline_s, "task_soft_time_limit_s", s.task_soft_time_limit_s),
        ("modal_call_deadline_s", s.modal_call_deadline_s, "task_soft_time_limit_s", s.task_soft_time_limit_s),
        ("task_soft_time_limit_s", s.task_soft_time_limit_s, "task_time_limit_s", s.task_time_limit_s),
        ("task_time_limit_s", s.task_time_limit_s, "visibility_timeout_s", s.visibility_timeout_s),
        ("heartbeat_interval_s", s.heartbeat_interval_s, "heartbeat_stale_s", s.heartbeat_stale_s),
        ("heartbeat_stale_s", s.heartbeat_stale_s, "visibility_timeout_s", s.visibility_timeout_s),
    ]
    for a, va, b, vb in pairs:
        if not va < vb:
            raise ValueError(f"{a} (BOUNDARIES_{a.upper()}={va}) must be below {b} (BOUNDARIES_{b.upper()}={vb}),"
                             " else a job can run twice or be lost; see config/celery_app.check_timing")
    if s.retry_backoff_base_s > s.retry_backoff_max_s:
        raise ValueError(f"retry_backoff_base_s (BOUNDARIES_RETRY_BACKOFF_BASE_S={s.retry_backoff_base_s}) must not"
                         f" exceed retry_backoff_max_s (BOUNDARIES_RETRY_BACKOFF_MAX_S={s.retry_backoff_max_s})")


def transport_options(settings: Settings) -> dict:
    """Redis transport options of the broker: one visibility timeout, socket timeouts, health checks,
    the queue order a worker polls in (``settings.queue_order_strategy``; task_queues list high first)."""
    return {"visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": settings.broker_restore_interval_s, "unacked_restore_throttle": 1,
            "socket_connect_timeout": settings.broker_connect_timeout_s,
            "socket_timeout": settings.broker_socket_timeout_s, "socket_keepalive": True,
            "health_check_interval": settings.broker_health_check_interval_s,
            "queue_order_strategy": settings.queue_order_strategy}


def make_celery(settings: Settings) -> Celery:
    """The Celery app. Raises ValueError when redis_url is unset, a ``rediss://`` URL has no certificate
    setting (:func:`broker_ssl_options`) or the timing is unsafe (:func:`check_timing`)."""
    if not settings.redis_url:
        raise ValueError("redis_url is not set (BOUNDARIES_REDIS_URL); only `boundaries run` starts an "
                         "embedded Redis")
    check_timing(settings)
    use_ssl = broker_ssl_options(settings.redis_url)
    broker = celery_broker_url(settings.redis_url)
    app = Celery("boundaries", broker=broker, set_as_current=False)
    transport = transport_options(settings)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_acks_on_failure_or_timeout=True,
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_use_ssl=use_ssl,
        redis_backend_use_ssl=use_ssl,
        broker_connection_timeout=settings.broker_connect_timeout_s,
        redis_socket_connect_timeout=settings.broker_connect_timeout_s,
        redis_socket_timeout=settings.broker_socket_timeout_s,
        redis_socket_keepalive=True,
        redis_backend_health_check_interval=settings.broker_health_check_interval_s,
        broker_connection_retry_on_startup=True,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_queues=[Queue(settings.queue_high), Queue(settings.queue_low)],
        task_default_queue=settings.queue_low,
        worker_hijack_root_logger=False,  # config/logging.py owns the root logger (JSON off a terminal)
        worker_send_task_events=True,  # task-received/started/succeeded/failed events: Flower sees tasks
        task_send_sent_event=True,  # task-sent from the producer (one PUBLISH per send, never retried)
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def queue_for(settings: Settings, priority: str) -> str:
    return settings.queue_high if priority == "high" else settings.queue_low
