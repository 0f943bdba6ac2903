"""The ``BOUNDARIES_*`` settings each ``boundaries`` command reads, shown at the end of its ``--help``.

Keys are command paths (``"dlq replay"``); values list setting names without the ``BOUNDARIES_`` prefix, a
trailing ``*`` standing for a family (``S3_*``: BUCKET, REGION, ENDPOINT_URL, ACCESS_KEY_ID,
SECRET_ACCESS_KEY, MAX_ATTEMPTS). tests/unit/test_cli_help_texts.py checks that every command has an entry
and that every name is a field of config.settings.Settings.
"""

from __future__ import annotations

import argparse

_STORE = ["STORAGE_BACKEND", "S3_*", "LOCAL_STORE_DIR"]
_REGISTRY = ["DATABASE_URL", "DB_SCHEMA"]
_QUEUES = ["REDIS_URL", "QUEUE_HIGH", "QUEUE_LOW"]

COMMAND_SETTINGS: dict[str, list[str]] = {
    "run": ["REDIS_URL", "DATABASE_URL", "STATE_DIR", *_STORE, "RUNNER", "CHECKPOINT_PATH", "SHARD_PAIRS",
            "LOCAL_RUNNER_WORKERS", "MAX_ATTEMPTS", "LOG_LEVEL"],
    "migrate": _REGISTRY,
    "model-version": [],
    "eval": ["DEVICE", "BATCH_SIZE", "MODEL_PRECISION"],
    "ingest": [*_REGISTRY, *_STORE, "FRAMES_PREFIX_TEMPLATE", "LAYOUT_DB_KEY_TEMPLATE"],
    "worker": [*_QUEUES, *_REGISTRY, *_STORE, "RUNNER", "MODAL_APP_NAME", "CHECKPOINT_PATH", "MAX_ATTEMPTS",
               "BROKER_START_WAIT_S", "TASK_TIME_LIMIT_S", "VISIBILITY_TIMEOUT_S", "HEARTBEAT_INTERVAL_S",
               "LOG_LEVEL"],
    "serve": ["WEBHOOK_SECRET", "WEBHOOK_HMAC_SECRET", *_QUEUES, *_REGISTRY, *_STORE, "PRODUCER_DEADLINE_S",
              "DEFAULT_PRIORITY", "LOG_LEVEL"],
    "reconcile": [*_QUEUES, *_REGISTRY, "RECONCILE_INTERVAL_S", "RETRY_POLL_INTERVAL_S", "RECONCILE_PRIORITY",
                  "RETRY_PRIORITY", "RESEND_UNSENT_AFTER_S"],
    "sweep": [*_QUEUES, *_REGISTRY, "HEARTBEAT_STALE_S", "SWEEP_QUEUED_AFTER_S", "SWEEP_PRIORITY"],
    "dlq list": _REGISTRY,
    "dlq show": _REGISTRY,
    "dlq replay": [*_QUEUES, *_REGISTRY, "REPLAY_PRIORITY", "REPLAY_RATE_PER_S"],
    "dlq purge": _REGISTRY,
    "store orphans": [*_REGISTRY, *_STORE, "FRAMES_PREFIX_TEMPLATE"],
    "upload-checkpoint": [],
    "doctor": ["REDIS_URL", *_REGISTRY, *_STORE, "RUNNER", "MODAL_APP_NAME"],
    "runs list": _REGISTRY,
    "runs show": [*_REGISTRY, *_STORE],
    "runs download": [*_REGISTRY, *_STORE],
    "jobs list": _REGISTRY,
    "jobs show": _REGISTRY,
}
"""Settings read per command (see the module docstring)."""


def settings_line(names: list[str]) -> str:
    """``settings: BOUNDARIES_A, BOUNDARIES_B`` (or a line saying none is read)."""
    if not names:
        return "settings: reads no BOUNDARIES_* setting"
    return "settings: " + ", ".join(f"BOUNDARIES_{n}" for n in names) + " (config/settings.py documents each)"


def subcommands(parser: argparse.ArgumentParser, path: str = ""):
    """Yield ``(command path, parser)`` for every leaf command under ``parser``."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        if path:
            yield path, parser
        return
    for action in subs:
        for name, child in action.choices.items():
            yield from subcommands(child, f"{path} {name}".strip())


def add_settings_epilogs(parser: argparse.ArgumentParser) -> None:
    """Append :func:`settings_line` of :data:`COMMAND_SETTINGS` to each known command's ``--help``
    (its own epilog, if any, is kept first)."""
    for path, p in subcommands(parser):
        if path in COMMAND_SETTINGS:
            line = settings_line(COMMAND_SETTINGS[path])
            p.epilog = f"{p.epilog}\n\n{line}" if p.epilog else line
