"""A broker that accepts TCP and never answers, and SIGTERM in every state of a worker (issue 12,
fault 4). Real ``boundaries worker`` processes; the silent broker is a TCP server of the test that
accepts connections and never writes a byte (or a proxy to a real Redis that goes silent)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import suppress
from pathlib import Path

import pytest

from boundaries_cli.embedded import child_env
from tests.conftest import REPO
from tests.integration.faults import counters, set_faults, synthetic_video
from tests.integration.harness import e2e_settings

BOUNDARIES = [sys.executable, "-m", "boundaries_cli.main"]
"""The ``boundaries`` console script, run from the checkout."""
PASSWORD = "s3cret-broker-pw"  # noqa: S105 - a test value that must never be printed


class SilentServer:
    """Accepts TCP connections on a loopback port and never answers (a wrong port behind a proxy).
    With ``upstream`` (host, port), a proxy that forwards until :meth:`go_silent`."""

    def __init__(self, upstream: tuple[str, int] | None = None):
        self.upstream = upstream
        self.silent = upstream is None
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if not self.silent:
                up = socket.create_connection(self.upstream)
                self.conns.append(up)
                threading.Thread(target=self._pipe, args=(c, up), daemon=True).start()
                threading.Thread(target=self._pipe, args=(up, c), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket):
        with suppress(OSError):
            while data := src.recv(65536):
                while self.silent:  # hold the bytes: the peer hears nothing, the socket stays open
                    time.sleep(0.05)
                dst.sendall(data)

    def go_silent(self):
        self.silent = True

    def close(self):
        self._closed = True
        self.sock.close()
        for c in self.conns:
            with suppress(OSError):
                c.close()


@pytest.fixture
def silent():
    servers = []

    def make(upstream=None):
        servers.append(SilentServer(upstream))
        return servers[-1]
    yield make
    for s in servers:
        s.close()


@pytest.fixture
def worker_proc(tmp_path):
    procs = []

    def start(settings, env_extra=None) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"worker-{len(procs)}.log"
        env = child_env(settings) | (env_extra or {})
        with open(log, "wb") as f:
            proc = subprocess.Popen([*BOUNDARIES, "worker", "--loglevel", "INFO"], env=env, cwd=REPO, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        return proc, log
    yield start
    for p in procs:
        if p.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def _settings(tmp_path, redis_url, pg_dsn, db_schema, **kw):
    return e2e_settings(redis_url=redis_url, pg_dsn=pg_dsn, db_schema=db_schema, tmp_path=tmp_path, **kw)


def _wait_exit(proc: subprocess.Popen, timeout_s: float) -> float:
    """Seconds until ``proc`` exited (AssertionError past ``timeout_s``)."""
    t0 = time.monotonic()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker still running {timeout_s} s later") from None
    return time.monotonic() - t0


def _wait_log(log: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} not logged within {timeout_s} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


def test_a_broker_that_never_answers_is_named_within_30_s(silent, worker_proc, tmp_path, pg_dsn, db_schema):
    # given: BOUNDARIES_REDIS_URL points at a port that accepts TCP and never answers
    server = silent()
    url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"

    # when: a worker starts
    proc, log = worker_proc(_settings(tmp_path, url, pg_dsn, db_schema))

    # then: within 30 s it exits with status 69 (EX_UNAVAILABLE) and one line naming the setting, password masked
    _wait_exit(proc, 30)
    out = log.read_text()
    assert proc.returncode == 69, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith("boundaries worker: error:") and "BOUNDARIES_REDIS_URL" in last, out[-3000:]
    assert f"127.0.0.1:{server.port}" in last and "did not answer" in last
    assert PASSWORD not in out


def test_rediss_pointed_at_a_plain_redis_is_named_within_30_s(worker_proc, tmp_path, redis_url, pg_dsn, db_schema):
    # given: a rediss:// URL (certificate checks on) whose server speaks plain Redis
    plain = redis_url.split("://", 1)[1].split("/", 1)[0]
    url = f"rediss://:{PASSWORD}@{plain}/0?ssl_cert_reqs=required"

    # when / then
    proc, log = worker_proc(_settings(tmp_path, url, pg_dsn, db_schema))
    _wait_exit(proc, 30)
    out = log.read_text()
    assert proc.returncode == 69, out[-3000:]
    assert "BOUNDARIES_REDIS_URL=rediss://" in out.strip().splitlines()[-1]
    assert PASSWORD not in out


def test_rediss_without_certificate_settings_is_refused_at_start(worker_proc, tmp_path, redis_url, pg_dsn,
                                                                 db_schema):
    # given: rediss:// with no ssl_cert_reqs (kombu would silently turn certificate checks off)
    plain = redis_url.split("://", 1)[1].split("/", 1)[0]
    url = f"rediss://:{PASSWORD}@{plain}/0"

    # when
    proc, log = worker_proc(_settings(tmp_path, url, pg_dsn, db_schema))

    # then: refused at once, with one line that says what to add
    _wait_exit(proc, 30)
    lines = log.read_text().strip().splitlines()
    assert proc.returncode == 78 and len(lines) == 1, lines  # EX_CONFIG
    assert "BOUNDARIES_REDIS_URL=rediss://" in lines[0] and "ssl_cert_reqs" in lines[0]
    assert PASSWORD not in lines[0]


def test_sigterm_while_starting_against_a_silent_broker(silent, worker_proc, tmp_path, pg_dsn, db_schema):
    # given: a worker waiting for a broker that never answers
    server = silent()
    proc, log = worker_proc(_settings(tmp_path, f"redis://127.0.0.1:{server.port}/0", pg_dsn, db_schema))
    time.sleep(5)
    assert proc.poll() is None

    # when / then
    proc.send_signal(signal.SIGTERM)
    assert _wait_exit(proc, 15) < 15


def test_sigterm_while_idle_and_while_reconnecting_to_a_silent_broker(silent, worker_proc, tmp_path, redis_url,
                                                                      pg_dsn, db_schema):
    host, port = redis_url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1].split(":")
    for state in ("idle", "reconnecting"):
        # given: a worker ready on a broker reached through a proxy
        proxy = silent(upstream=(host, int(port)))
        proc, log = worker_proc(_settings(tmp_path, f"redis://127.0.0.1:{proxy.port}/0", pg_dsn, db_schema))
        _wait_log(log, "ready.", 60)
        if state == "reconnecting":
            # the broker goes silent (sockets open, no answers): the worker's reads time out, it reconnects
            proxy.go_silent()
            time.sleep(8)
            assert proc.poll() is None

        # when / then
        proc.send_signal(signal.SIGTERM)
        assert _wait_exit(proc, 15) < 15, state


def test_sigterm_mid_job_ends_the_worker_and_requeues_the_job(make_stack, monkeypatch, worker_proc, redis_url,
                                                              db_schema):
    # given: a worker 60 s into a slow shard
    cfg = set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO, delay_s=60.0)
    s = make_stack(runner_factory="tests.integration.faults:slow_local", local_runner_deadline_s=300,
                   modal_call_deadline_s=300, task_soft_time_limit_s=400, task_time_limit_s=500,
                   visibility_timeout_s=600)  # no deadline ends the job for it
    tenant, vid = str(uuid.uuid4()), str(uuid.uuid4())
    res = synthetic_video(s.store, s.settings, tenant, vid, frames=12)
    s.registry.upsert_video(vid, tenant, 1)
    proc, log = worker_proc(s.settings)
    assert s.post(s.activate(tenant, vid, res)).status_code == 202
    deadline = time.monotonic() + 60
    while not counters(cfg).lrange(f"{cfg['ns']}:pids", 0, -1):
        assert time.monotonic() < deadline, f"no shard started:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)

    # when: SIGTERM mid-job
    proc.send_signal(signal.SIGTERM)

    # then: the worker is gone within 15 s, and the job's message went back to its queue: a new worker
    # (fast shards now) completes the job
    assert _wait_exit(proc, 15) < 15, log.read_text()[-3000:]
    # by the solo pool's own path (Celery's warm shutdown), not the prefork child's handler
    assert '"pool": "prefork"' not in log.read_text() and "worker.job_interrupted" in log.read_text()
    set_faults(monkeypatch, redis_url, f"faults:{db_schema}", REPO, delay_s=0.0)
    worker_proc(s.settings)
    job = s.wait_job(vid, timeout_s=90)
    assert job["status"] == "completed", job["error_message"]
