"""structlog setup: JSON when not on a terminal, console rendering otherwise."""

from __future__ import annotations

import logging
import sys

import structlog

_SECRET_KEYS = {"authorization", "secret", "password", "webhook_secret", "database_url", "token"}


def _drop_secrets(_logger, _name, event_dict):
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "**********"
    return event_dict


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
