"""config/logging.py: one JSON object per line off a terminal for structlog events, library records
and Python warnings, filtered by the one level setting BOUNDARIES_LOG_LEVEL; secrets masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from config.logging import log_level
from tests.conftest import REPO

_LOG_EVERYTHING = """
import logging, warnings
import structlog
from config.logging import configure_logging
configure_logging()
log = structlog.get_logger("boundaries.test")
log.debug("ours.debug")
log.info("ours.info", password="hunter2", job_id="j1")
log.warning("ours.warning")
for name in ("uvicorn.error", "uvicorn.access", "celery.worker", "kombu.connection", "psycopg", "botocore.hooks"):
    logging.getLogger(name).info("%s says %s", name, "hello")
    logging.getLogger(name).warning("%s warns", name)
logging.getLogger("psycopg.pool").info("connection requested")
logging.getLogger("multiprocessing").warning("billiard child exited")
warnings.warn("a python warning", UserWarning)
try:
    1 / 0
except ZeroDivisionError:
    log.exception("ours.failed")
"""


def _run(level: str) -> list[dict]:
    env = {**os.environ, "BOUNDARIES_LOG_LEVEL": level, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", _LOG_EVERYTHING], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout == ""
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # each line one JSON object


def test_every_record_is_one_json_line_at_info():
    events = _run("INFO")
    by_event = {e["event"]: e for e in events}
    assert "ours.debug" not in by_event
    assert by_event["ours.info"]["password"] == "*" * 10 and by_event["ours.info"]["job_id"] == "j1"
    for name in ("uvicorn.error", "uvicorn.access", "celery.worker", "kombu.connection", "psycopg", "botocore.hooks"):
        assert by_event[f"{name} says hello"]["logger"] == name
        assert by_event[f"{name} says hello"]["level"] == "info"
    assert "connection requested" not in by_event  # psycopg's pool chatter only at DEBUG
    assert by_event["billiard child exited"]["logger"] == "multiprocessing"
    assert any("a python warning" in e["event"] and e["logger"] == "py.warnings" for e in events)
    assert "ZeroDivisionError" in by_event["ours.failed"]["exception"]
    assert len(events) == 3 + 12 + 1 + 1  # ours (info, warning, failed), libraries, billiard, the warning


def test_one_level_setting_filters_ours_and_the_libraries():
    events = _run("WARNING")
    assert {e["level"] for e in events} == {"warning", "error"}
    assert len([e for e in events if e["event"].endswith(" warns")]) == 6


def test_a_bad_level_names_the_setting(monkeypatch):
    monkeypatch.setenv("BOUNDARIES_LOG_LEVEL", "LOUD")
    with pytest.raises(ValueError, match="BOUNDARIES_LOG_LEVEL='LOUD' is not a log level"):
        log_level()
