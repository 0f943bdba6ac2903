"""The worker healthcheck of docker-compose.yml, run as Docker runs it: its CMD-SHELL line through
``sh -c`` with ``HOSTNAME`` set (Docker sets it to the container's hostname, which is what Celery's
default node name ``celery@%h`` uses) and the worker's environment, against a real ``boundaries worker``
on a private Redis (no other worker can answer the ping)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from boundaries_cli.embedded import start_embedded_redis
from tests.unit.test_compose import healthcheck_shell_command

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run_healthcheck(command: str, env: dict, hostname: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], env={**env, "HOSTNAME": hostname}, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def worker_env(tmp_path, pg_dsn, db_schema):
    url, handle = start_embedded_redis(tmp_path / "redis")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "BOUNDARIES_REDIS_URL": url, "BOUNDARIES_DATABASE_URL": pg_dsn, "BOUNDARIES_DB_SCHEMA": db_schema,
           "BOUNDARIES_STATE_DIR": str(tmp_path / "state"), "BOUNDARIES_WEBHOOK_SECRET": "compose-healthcheck-test"}
    yield env
    handle.shutdown()


def test_worker_healthcheck_passes_for_a_running_worker_and_fails_without_one(worker_env, tmp_path):
    command = healthcheck_shell_command("worker")
    host = socket.gethostname()

    # no worker yet: unhealthy
    before = _run_healthcheck(command, worker_env, host)
    assert before.returncode != 0, before.stdout + before.stderr

    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen([str(BIN / "boundaries"), "worker", "--loglevel", "WARNING"], env=worker_env,
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            r = _run_healthcheck(command, worker_env, host)
            if r.returncode == 0 or time.monotonic() > deadline or worker.poll() is not None:
                break
            time.sleep(1)
        assert r.returncode == 0, (r.stdout, r.stderr, (tmp_path / "worker.log").read_text())
        assert f"celery@{host}" in r.stdout  # the reply came from this worker's default node name

        # another container's hostname: the ping names that node, which is not this worker
        other = _run_healthcheck(command, worker_env, "not-" + host)
        assert other.returncode != 0, other.stdout
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()

    after = _run_healthcheck(command, worker_env, host)
    assert after.returncode != 0, after.stdout + after.stderr
