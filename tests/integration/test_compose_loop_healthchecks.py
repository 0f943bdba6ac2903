"""The reconciler's and sweeper's compose healthchecks against the real commands: ``boundaries reconcile
--loop`` / ``sweep --loop`` with the service's BOUNDARIES_LIVENESS_FILE (moved under tmp) on the test
Redis and PostgreSQL; the healthcheck line, run through ``sh -c``, fails before the loop's first pass and
passes once it ran."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from boundaries.registry.db import Database
from tests.unit.test_compose import _compose, healthcheck_shell_command

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("service", ["reconciler", "sweeper"])
def test_loop_service_becomes_healthy_after_its_first_pass(service, redis_url, pg_dsn, db_schema, tmp_path):
    svc = _compose()["services"][service]
    db = Database(pg_dsn, db_schema)
    db.migrate()
    db.close()
    q = uuid.uuid4().hex[:10]
    liveness = tmp_path / "alive"
    env = {**os.environ, "BOUNDARIES_REDIS_URL": redis_url, "BOUNDARIES_DATABASE_URL": pg_dsn,
           "BOUNDARIES_DB_SCHEMA": db_schema, "BOUNDARIES_QUEUE_HIGH": f"t{q}.high",
           "BOUNDARIES_QUEUE_LOW": f"t{q}.low", "BOUNDARIES_STATE_DIR": str(tmp_path / "state"),
           "BOUNDARIES_LIVENESS_FILE": str(liveness)}
    assert "BOUNDARIES_LIVENESS_FILE" in svc["environment"]
    command = healthcheck_shell_command(service)

    def healthy() -> bool:
        return subprocess.run(["sh", "-c", command], env=env, capture_output=True).returncode == 0

    assert not healthy()
    proc = subprocess.Popen([str(BIN / svc["command"][0]), *svc["command"][1:]], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not healthy() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert healthy(), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no pass in 60 s"
    finally:
        proc.terminate()
        proc.wait(30)
