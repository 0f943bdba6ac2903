"""Build the pipeline's dependencies from settings, once per worker process."""

from __future__ import annotations

import importlib
import os

from boundaries.model_versions import resolve_model_version
from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from boundaries.storage.factory import store_from_settings
from config.settings import Settings
from worker.pipeline import Deps


def make_runner(settings: Settings):
    """The Runner of ``settings``: ``runner_factory`` (``module:callable`` called with the settings) when
    set, else the Modal or local runner. Raises ValueError for a malformed or unimportable factory."""
    if settings.runner_factory:
        module, _, name = settings.runner_factory.partition(":")
        if not module or not name:
            raise ValueError(f"runner_factory must be 'module:callable', got {settings.runner_factory!r}")
        try:
            factory = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"runner_factory {settings.runner_factory!r} cannot be imported: {e}") from e
        return factory(settings)
    if settings.runner == "modal":
        from worker.runners.modal import ModalRunner

        return ModalRunner.from_settings(settings)
    from worker.runners.local import LocalRunner

    return LocalRunner(settings.local_runner_workers, deadline_s=settings.local_runner_deadline_s)


def measured_runner(runner, settings: Settings):
    """``runner`` counting its shard durations into Redis (worker/runners/measured.py) when a Redis URL is
    set (the producer's /metrics reads them); ``runner`` itself otherwise."""
    if not settings.redis_url:
        return runner
    import redis

    from config.celery_app import redis_py_url
    from config.shard_metrics import shard_metrics_key
    from worker.runners.measured import MeasuredRunner

    client = redis.Redis.from_url(redis_py_url(settings.redis_url),
                                  socket_connect_timeout=settings.broker_connect_timeout_s,
                                  socket_timeout=settings.broker_socket_timeout_s)
    return MeasuredRunner(runner, client, shard_metrics_key(settings.db_schema))


def served_model_version(settings: Settings) -> str | None:
    """The model_version this worker's predictor serves, or None when it serves any: the Modal runner
    with a checkpoint configured loads ``/models/checkpoints/{job's model_version}.pt`` per job (COMPAT.md
    §8). The local and inline runners (and a ``runner_factory``) load the configured checkpoint, or the
    built-in classical detector. Raises ValueError as :func:`resolve_model_version` does."""
    if settings.runner == "modal" and settings.checkpoint_path is not None and not settings.runner_factory:
        return None
    return resolve_model_version(settings)


def database(settings: Settings) -> Database:
    if settings.database_url is None:
        raise ValueError("database_url is not set: set BOUNDARIES_DATABASE_URL (only `boundaries run` starts an "
                         "embedded PostgreSQL of its own)")
    return Database(settings.database_url.get_secret_value(), settings.db_schema)


class WorkerContext:
    """Per-process deps (fork-aware: rebuilt in a new process)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._pid = None
        self._deps: Deps | None = None

    def deps(self) -> Deps:
        if self._deps is None or self._pid != os.getpid():
            db = database(self.settings)
            self._deps = Deps(self.settings, Registry(db), store_from_settings(self.settings),
                              measured_runner(make_runner(self.settings), self.settings))
            self._pid = os.getpid()
        return self._deps
