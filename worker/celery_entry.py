"""Celery entry point (the edge): ``celery -A worker.celery_entry worker -Q boundary.high,boundary.low``.

Settings are read from the environment here, once, and passed down.
"""

from __future__ import annotations

from config.celery_app import make_celery
from config.logging import configure_logging
from config.settings import Settings
from worker.deps import WorkerContext
from worker.tasks import register_tasks

settings = Settings()
configure_logging()
app = make_celery(settings)
context = WorkerContext(settings)
register_tasks(app, context)
