"""Worker start-up and shutdown at the broker's edge (connected to Celery's signals by
``worker/celery_entry.py``).

* Before exec (``boundaries worker``): :func:`check_worker_settings` refuses a missing
  ``BOUNDARIES_REDIS_URL`` / ``BOUNDARIES_DATABASE_URL``, unsafe timings and ``rediss://`` without
  certificate settings (ConfigError: exit 78, one line).
* Start: before Celery connects, the broker (``BOUNDARIES_REDIS_URL``) must answer PING within
  ``broker_start_wait_s``. A broker that accepts TCP and never answers (a wrong port behind a proxy,
  ``rediss://`` pointed at a plain Redis) used to leave the worker silent and never ready; now it exits
  with status 69 (EX_UNAVAILABLE) and one line naming the setting, its password masked. Each failed try
  is logged. Then the object store must answer (:func:`check_store_or_exit`, HEAD bucket): a missing
  bucket or refused credentials exit 78 (EX_CONFIG) naming ``BOUNDARIES_S3_BUCKET`` (or the credential
  settings), an unreachable endpoint 69 — instead of failing every job it takes.
* SIGTERM: Celery's warm shutdown waits for the running job, hours under the solo pool. A SIGTERM
  while a job runs raises :class:`JobInterrupted` in the job (the solo pool runs it in the main
  thread, where Python runs signal handlers): the job's code unwinds (its ``finally`` blocks and the
  local runner's children with it), Celery terminates, and the unacknowledged message goes back to
  its queue when kombu closes the channel, for the next worker. When idle or connecting, Celery's own
  shutdown ends the worker; the broker socket timeouts bound each wait. Whatever still hangs (kombu
  retries a publish to a silent broker forever) is cut by a forced exit ``worker_shutdown_deadline_s``
  after the signal.
* Prefork pool (``boundaries worker -P prefork -c N``): jobs run in pool children. SIGTERM to the worker
  ends it as above (a running job makes it a cold shutdown, which sends SIGTERM to the children). Billiard's
  own SIGTERM handler in a child exits it without handing the job back: the job stayed ``running`` behind
  a fresh heartbeat until the sweep. Each child therefore gets the solo pool's rule before each task
  (:func:`interrupt_job_in_child`): SIGTERM while a job runs raises :class:`JobInterrupted` in it, the job
  is handed back (queued, due now) and the child exits; an idle child exits through billiard's handler.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import redis
import structlog
from celery.exceptions import WorkerTerminate
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.celery_app import masked_url, redis_py_url
from config.settings import Settings

log = structlog.get_logger(__name__)

EXIT_BROKER_UNAVAILABLE = 69  # EX_UNAVAILABLE (sysexits.h), as boundaries_cli/exits.py
EXIT_CONFIG = 78  # EX_CONFIG


class JobInterrupted(WorkerTerminate):
    """Raised in a running job by SIGTERM: the worker is shutting down now, the job's message is requeued.
    A ``SystemExit`` (Celery's WorkerTerminate), so no ``except Exception`` in a job swallows it."""


def ping_broker(settings: Settings) -> str | None:
    """PING the broker until it answers or ``broker_start_wait_s`` passes (each try bounded by the
    broker connect and socket timeouts). Returns None when it answered, else the last error's text."""
    url = redis_py_url(settings.redis_url)
    deadline = time.monotonic() + settings.broker_start_wait_s
    error = "no attempt"
    attempt = 0
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        timeout = max(0.1, min(settings.broker_socket_timeout_s, left))
        client = redis.Redis.from_url(url, socket_connect_timeout=min(settings.broker_connect_timeout_s, timeout),
                                      socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
        try:
            client.ping()
            return None
        except (redis.RedisError, OSError) as e:
            error = f"{type(e).__name__}: {e}"[:300]
            log.warning("worker.broker_unanswered", broker=masked_url(settings.redis_url), attempt=attempt,
                        error=error)
        finally:
            client.close()
        if time.monotonic() + 0.5 >= deadline:
            return error
        time.sleep(0.5)


def check_broker_or_exit(settings: Settings) -> None:
    """:func:`ping_broker`; on no answer, print one line to stderr and exit with status 69."""
    error = ping_broker(settings)
    if error is not None:
        print(f"boundaries worker: error: the broker BOUNDARIES_REDIS_URL={masked_url(settings.redis_url)} did not "
              f"answer PING within {settings.broker_start_wait_s:g} s ({error}); check its host, port and "
              "redis:// vs rediss://", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BROKER_UNAVAILABLE)


def check_store_or_exit(settings: Settings) -> None:
    """HEAD the bucket (:func:`boundaries.health.check_store`, no write); when it fails, print one line
    naming the setting to fix and exit 78 (no such bucket, credentials refused) or 69 (no answer)."""
    from boundaries.health import check_store, store_for_checks

    check = check_store(store_for_checks(settings), write=False)
    if not check.ok:
        print(f"boundaries worker: error: object store: {check.detail}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG if check.kind == "config" else EXIT_BROKER_UNAVAILABLE)
    log.info("worker.store_ok", detail=check.detail)


def check_worker_settings(settings: Settings) -> None:
    """Refuse settings a worker cannot start with, before Celery is exec'd.

    Raises:
        ConfigError: ``BOUNDARIES_REDIS_URL`` or ``BOUNDARIES_DATABASE_URL`` unset (one line naming it);
        ValueError: unsafe timings or ``rediss://`` without ``ssl_cert_reqs`` (config/celery_app.py).
    """
    from boundaries.errors import ConfigError
    from config.celery_app import broker_ssl_options, check_timing

    if not settings.redis_url:
        raise ConfigError("BOUNDARIES_REDIS_URL is not set: a worker needs the Celery broker, e.g. "
                          "redis://127.0.0.1:6379/0 (only `boundaries run` starts an embedded Redis)",
                          "BOUNDARIES_REDIS_URL")
    if settings.database_url is None:
        raise ConfigError("BOUNDARIES_DATABASE_URL is not set: a worker needs the registry database "
                          "(only `boundaries run` starts an embedded PostgreSQL)", "BOUNDARIES_DATABASE_URL")
    check_timing(settings)
    broker_ssl_options(settings.redis_url)


def _force_exit_after(deadline_s: float) -> None:
    time.sleep(deadline_s)
    print(f"boundaries worker: error: orderly shutdown still running {deadline_s:g} s after the signal "
          "(a broker that does not answer?); exiting now", file=sys.stderr, flush=True)
    os._exit(1)


def interrupt_running_job(**_kw) -> None:
    """``worker_shutting_down`` receiver (runs inside Celery's SIGTERM handler, in the main thread): when
    a job is running, end it now (:class:`JobInterrupted`) instead of waiting for it to finish."""
    from celery.worker import state

    if state.active_requests:
        log.warning("worker.job_interrupted", reason="SIGTERM", jobs=len(state.active_requests))
        raise JobInterrupted(1)


_running_in_child = threading.Event()
"""Set while a task runs in this prefork child (task_prerun … task_postrun)."""
_pool_child: dict = {"is": False, "previous_sigterm": None}
_MAIN_PID = os.getpid()
"""The worker's main process (this module is imported there before billiard forks its pool children)."""


def interrupt_job_in_child(signum, frame) -> None:
    """SIGTERM handler of a prefork pool child: a running job ends now (:class:`JobInterrupted`, which the
    task turns into a hand-back); an idle child gets billiard's own handler (it exits)."""
    if _running_in_child.is_set():
        log.warning("worker.job_interrupted", reason="SIGTERM", pool="prefork", pid=os.getpid())
        raise JobInterrupted(1)
    previous = _pool_child["previous_sigterm"]
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _on_task_prerun(**_kw) -> None:
    """Mark a task running; in a prefork child, (re)install :func:`interrupt_job_in_child` — billiard sets
    its own SIGTERM handler after Celery's process initializer, so it is installed here, before each task."""
    _running_in_child.set()
    if _pool_child["is"]:
        current = signal.getsignal(signal.SIGTERM)
        if current is not interrupt_job_in_child:
            _pool_child["previous_sigterm"] = current
            signal.signal(signal.SIGTERM, interrupt_job_in_child)


def allow_runner_children() -> None:
    """In a prefork pool child: let the local runner start its (stdlib) process pool. Billiard installs its
    own process object, marked daemonic and holding billiard's authkey type, as the stdlib's current
    process; multiprocessing then refuses to start children ("daemonic processes are not allowed to have
    children") and to pickle that authkey for them. The child's process object is made non-daemonic with
    a stdlib authkey. The daemon rule is meant to stop orphans, which the local runner prevents itself (its
    children die with their parent: PR_SET_PDEATHSIG and a watchdog, worker/runners/local.py)."""
    from multiprocessing import process

    config = process.current_process()._config  # noqa: SLF001 - no public API for either key
    config.pop("daemon", None)
    config["authkey"] = process.AuthenticationString(os.urandom(32))


def connect(settings: Settings) -> None:
    """Connect the start-up check and the SIGTERM rule to Celery's worker signals."""
    from celery import signals

    started = threading.Event()

    def on_worker_init(**_kw) -> None:
        check_broker_or_exit(settings)
        check_store_or_exit(settings)

    def on_shutting_down(**kw) -> None:
        if not started.is_set():  # the first signal starts the clock
            started.set()
            threading.Thread(target=_force_exit_after, args=(settings.worker_shutdown_deadline_s,),
                             name="shutdown-deadline", daemon=True).start()
        interrupt_running_job(**kw)

    def on_process_init(**_kw) -> None:
        # sent in each prefork child, and also by Celery's solo pool in the main process: only a child
        # (another pid) takes the child's SIGTERM rule; the solo pool keeps Celery's warm shutdown
        # (worker_shutting_down -> interrupt_running_job)
        if os.getpid() != _MAIN_PID:
            _pool_child["is"] = True
            allow_runner_children()

    signals.worker_init.connect(on_worker_init, weak=False)
    signals.worker_shutting_down.connect(on_shutting_down, weak=False)
    signals.worker_process_init.connect(on_process_init, weak=False)
    signals.task_prerun.connect(_on_task_prerun, weak=False)
    signals.task_postrun.connect(lambda **_kw: _running_in_child.clear(), weak=False)
