"""Local-runner children (spawned processes) log like their worker: one JSON object per line when
stderr is not a terminal, structlog events and library records alike, at BOUNDARIES_LOG_LEVEL."""

from __future__ import annotations

import json
import logging

import structlog

from boundaries.shards import ShardRequest
from worker.runners.local import LocalRunner


def _logging_shard(request: dict) -> dict:
    """Runs in the child: logs at three levels through structlog and a library's stdlib logger."""
    log = structlog.get_logger("tests.child")
    log.debug("child.debug_event", shard_id=request["shard_id"])
    log.info("child.info_event", shard_id=request["shard_id"])
    log.warning("child.warning_event", shard_id=request["shard_id"])
    logging.getLogger("botocore.credentials").warning("library record %s", request["shard_id"])
    logging.getLogger("botocore.credentials").info("library info %s", request["shard_id"])
    return {"shard_id": request["shard_id"], "pairs": 1, "seconds": 0.1, "pairs_per_s": 10.0, "decode_s": 0.0,
            "model_s": 0.0, "output_key": request["output_key"]}


class _LoggingRunner(LocalRunner):
    target = staticmethod(_logging_shard)


def _request(i: int) -> ShardRequest:
    return ShardRequest(shard_id=f"s{i}", tenant_id="t", video_id="v", cropped_frames_version=1, model_version="m",
                        first_pair=0, end_pair=1, frames_prefix="p/", layout_db_key="l", output_key=f"o{i}",
                        store={"backend": "local"})


def _child_lines(capfd, level: str, monkeypatch) -> list[dict]:
    monkeypatch.setenv("BOUNDARIES_LOG_LEVEL", level)
    runner = _LoggingRunner(workers=1)
    try:
        assert [r.shard_id for r in runner.map([_request(0), _request(1)])] == ["s0", "s1"]
    finally:
        runner.close()
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert lines, "the child logged nothing"
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_children_log_json_at_the_configured_level(capfd, monkeypatch):
    events = _child_lines(capfd, "WARNING", monkeypatch)
    names = [e["event"] for e in events]
    assert names.count("child.warning_event") == 2
    assert names.count("library record s0") + names.count("library record s1") == 2
    assert not [e for e in events if e["level"] in ("debug", "info")]
    library = next(e for e in events if e["event"].startswith("library record"))
    assert library["logger"] == "botocore.credentials" and library["level"] == "warning"


def test_children_follow_a_lower_level_too(capfd, monkeypatch):
    names = [e["event"] for e in _child_lines(capfd, "DEBUG", monkeypatch)]
    assert names.count("child.debug_event") == 2 and names.count("child.info_event") == 2
