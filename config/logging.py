"""Logging of every process (``serve``, ``worker``, the loops, local-runner children): structlog events
and stdlib records of libraries (uvicorn, uvicorn.access, celery, kombu, psycopg, botocore …) go through
ONE stdlib handler on the root logger, formatted by structlog's ``ProcessorFormatter``: one JSON object
per line when stderr is not a terminal, console rendering on a terminal.

One level setting: ``BOUNDARIES_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR, CRITICAL; read when ``level``
is not given) filters both structlog events and library records.

JSON fields: ``event`` (a dotted name for our events, the formatted message for library records),
``level``, ``timestamp`` (ISO 8601, UTC), ``logger`` (the stdlib logger's name for library records),
``exception`` (a formatted traceback) and the event's own keys. Keys naming secrets are masked.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

LEVEL_ENV = "BOUNDARIES_LOG_LEVEL"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SECRET_KEYS = {"authorization", "secret", "password", "webhook_secret", "database_url", "token"}
_HANDLER_NAME = "boundaries"


def _drop_secrets(_logger, _name, event_dict):
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "**********"
    return event_dict


def _replaceable(handler: logging.Handler) -> bool:
    """Ours from an earlier call, or a plain stream handler (basicConfig's, a library's own); others —
    pytest's capture, an error tracker's — stay."""
    return handler.get_name() == _HANDLER_NAME or type(handler) is logging.StreamHandler


def log_level(level: str | None = None, default: str = "INFO") -> str:
    """The level name to use: ``level``, else ``BOUNDARIES_LOG_LEVEL``, else ``default``.

    Raises:
        ValueError: not a level name (one line naming BOUNDARIES_LOG_LEVEL and the value).
    """
    name = (level or os.environ.get(LEVEL_ENV) or default).strip().upper()
    if name not in _LEVELS:
        raise ValueError(f"{LEVEL_ENV}={name!r} is not a log level; use one of {', '.join(_LEVELS)}")
    return name


def configure_logging(level: str | None = None, json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger of this process (idempotent: a second call
    replaces the handler it installed, so Celery's ``setup_logging`` signal may call it again).

    Args:
        level: a level name; None reads ``BOUNDARIES_LOG_LEVEL`` (default INFO).
        json: force JSON (True) or console (False) rendering; None: JSON unless stderr is a terminal.
    """
    name = log_level(level)
    if json is None:
        json = not sys.stderr.isatty()
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(name)),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if _replaceable(h)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(name)
    logging.captureWarnings(True)  # Python warnings (Celery's SecurityWarning …) as records of py.warnings
    for lib in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "kombu", "psycopg", "botocore"):
        lib_logger = logging.getLogger(lib)
        for old in [h for h in lib_logger.handlers if _replaceable(h)]:
            lib_logger.removeHandler(old)
        lib_logger.propagate = True
        lib_logger.setLevel(logging.NOTSET)
    # billiard (Celery's prefork pool) logs to "multiprocessing" with propagation off: our handler there too
    mp = logging.getLogger("multiprocessing")
    for old in [h for h in mp.handlers if h.get_name() == _HANDLER_NAME]:
        mp.removeHandler(old)
    mp.addHandler(handler)
    mp.propagate = False
    # psycopg's pool logs every connection request/return at INFO (several lines per job): below DEBUG,
    # only its warnings
    logging.getLogger("psycopg.pool").setLevel(logging.DEBUG if name == "DEBUG" else logging.WARNING)
