"""Celery entry point (the edge): ``celery -A worker.celery_entry worker -Q boundary.high,boundary.low``.

Settings are read from the environment here, once, and passed down. A configuration error (a bad
setting, ``rediss://`` without ``ssl_cert_reqs``) ends the process with one line and status 78 (EX_CONFIG);
worker/boot.py checks the broker before Celery connects and bounds shutdown.
"""

from __future__ import annotations

import sys

from config.celery_app import make_celery
from config.logging import configure_logging
from config.settings import Settings
from worker import boot
from worker.deps import WorkerContext
from worker.tasks import register_tasks

try:
    settings = Settings()
    app = make_celery(settings)
except ValueError as e:  # pydantic's ValidationError is a ValueError
    print(f"boundaries worker: error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
    raise SystemExit(boot.EXIT_CONFIG) from None
configure_logging()
boot.connect(settings)
context = WorkerContext(settings)
register_tasks(app, context)
