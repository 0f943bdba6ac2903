"""Celery entry point (the edge): ``celery -A worker.celery_entry worker -Q boundary.high,boundary.low``.

Settings are read from the environment here, once, and passed down. A configuration error (a bad
setting, ``rediss://`` without ``ssl_cert_reqs``) ends the process with one line and status 78 (EX_CONFIG);
worker/boot.py checks the broker before Celery connects and bounds shutdown.

Logging: Celery never configures logging itself here. Its ``setup_logging`` signal is connected to
:func:`config.logging.configure_logging` with the worker's ``-l`` level, so Celery's, kombu's and our own
records all go through one JSON handler when stderr is not a terminal (the root logger is not hijacked,
stdout/stderr are not redirected into a plain-text logger).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from datetime import UTC, datetime

import structlog
from celery import signals
from celery.apps import worker as celery_worker_app

from config.celery_app import make_celery
from config.logging import LEVEL_ENV, configure_logging, log_level
from config.settings import Settings
from worker import boot
from worker.deps import WorkerContext
from worker.tasks import register_tasks


def _setup_logging(loglevel=None, **_kw) -> None:
    """``setup_logging`` receiver: a connected receiver makes Celery skip its own logging set-up."""
    if isinstance(loglevel, int):  # Celery passes the -l level as a number
        loglevel = logging.getLevelName(loglevel)
    configure_logging(loglevel or None)
    if loglevel:  # the local runner's children (spawned, configure_logging() from the environment) follow
        os.environ[LEVEL_ENV] = log_level(loglevel)


def _say_as_json(msg, f=sys.__stderr__) -> None:
    """Stand-in for ``celery.apps.worker.safe_say`` off a terminal: Celery's shutdown notices ("worker:
    Warm shutdown (MainProcess)") come from its signal handlers as plain text; this writes them as one
    JSON line instead, with one ``os.write`` as Celery does (no lock taken inside a signal handler)."""
    line = json.dumps({"event": " ".join(str(msg).split()), "level": "warning", "logger": "celery.apps.worker",
                       "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")})
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.write(f.fileno(), (line + "\n").encode())


def _log_ready(sender=None, **_kw) -> None:
    """``worker_ready`` receiver: the facts of the banner, read from the running consumer, as one event."""
    controller = getattr(sender, "controller", None)
    pool = getattr(controller, "pool", None)
    structlog.get_logger(__name__).info(
        "worker.ready", node=getattr(sender, "hostname", None), pool=type(pool).__module__.rsplit(".", 1)[-1],
        concurrency=getattr(controller, "concurrency", None),
        queues=sorted(sender.task_consumer.queues and [q.name for q in sender.task_consumer.queues] or []))


try:
    settings = Settings()
    app = make_celery(settings)
except ValueError as e:  # pydantic's ValidationError is a ValueError
    print(f"boundaries worker: error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
    raise SystemExit(boot.EXIT_CONFIG) from None
configure_logging()
if not sys.stderr.isatty():
    celery_worker_app.safe_say = _say_as_json
signals.setup_logging.connect(_setup_logging, weak=False)
signals.worker_ready.connect(_log_ready, weak=False)
boot.connect(settings)
context = WorkerContext(settings)
register_tasks(app, context)
