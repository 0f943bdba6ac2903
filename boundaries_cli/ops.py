"""Operator commands: ingest, worker, serve, reconcile, sweep; dead letters in boundaries_cli/dlq.py."""

from __future__ import annotations

import os
import signal
import sys

from boundaries_cli.args import parse_crop, uuid_arg, video_file
from config.settings import Settings


def _registry(settings: Settings):
    from boundaries.registry.dead_letters import DeadLetters
    from boundaries.registry.registry import Registry
    from worker.deps import database

    db = database(settings)
    return Registry(db), DeadLetters(db)


def cmd_ingest(args) -> int:
    from boundaries_cli.ingest_cmds import cmd_ingest as ingest

    return ingest(args)


def worker_argv(args, settings: Settings, *, quiet: bool) -> list[str]:
    """The ``celery … worker`` command line of ``boundaries worker``: queues (default both priority
    queues, high first), node name, pool and concurrency, level, then the extra Celery options given
    after ``--`` verbatim. ``quiet``: no plain-text banner (stdout is not a terminal; the worker logs a
    JSON ``worker.ready`` line with the same facts instead).

    Raises:
        ValueError: ``--concurrency`` below 1, or above 1 with the solo pool (one line naming the option).
    """
    if args.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {args.concurrency}")
    if args.pool == "solo" and args.concurrency != 1:
        raise ValueError(f"--concurrency {args.concurrency} needs --pool prefork; the solo pool runs one job "
                         "at a time (or run more worker processes)")
    queues = args.queues or f"{settings.queue_high},{settings.queue_low}"
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_entry"]
    if quiet:
        argv.append("--quiet")
    argv += ["worker", "-Q", queues, "-n", args.hostname, "--pool", args.pool, "--concurrency",
             str(args.concurrency), "-l", args.loglevel, "--task-events",
             # no worker heartbeat/gossip/mingle: their publishes retry against a silent broker (worker/boot.py)
             "--without-heartbeat", "--without-gossip", "--without-mingle"]
    return argv + list(args.celery_args)


def cmd_worker(args) -> int:
    """exec a Celery worker with the environment's settings (:func:`worker_argv`). The level is exported as
    BOUNDARIES_LOG_LEVEL so the worker and its local-runner children log at the same level."""
    from config.logging import LEVEL_ENV, log_level

    s = Settings()
    from worker.boot import check_worker_settings

    check_worker_settings(s)  # a missing URL or unsafe timing: one line, exit 78, before Celery starts
    args.loglevel = log_level(args.loglevel)
    argv = worker_argv(args, s, quiet=not sys.stdout.isatty())
    os.environ[LEVEL_ENV] = args.loglevel
    os.execv(sys.executable, argv)  # noqa: S606 - fixed argv, no shell
    return 0  # pragma: no cover


def cmd_serve(args) -> int:
    import uvicorn

    from config.logging import configure_logging
    from producer.app import create_app

    # the producer's events (accepted/ignored/rejected with reasons, warm-up) are INFO: log them
    configure_logging()  # BOUNDARIES_LOG_LEVEL, default INFO
    # log_config=None, log_level=None: uvicorn installs no plain-text handlers and sets no levels; its
    # loggers (uvicorn.error, uvicorn.access) reach the JSON handler at BOUNDARIES_LOG_LEVEL
    # uvicorn re-raises a captured SIGTERM after its graceful shutdown, with the handler that was in place
    # before it started: this one makes that an orderly exit 0 (a deploy's stop is not a failure)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(create_app(Settings()), host=args.host, port=args.port, log_config=None, log_level=None)
    return 0


def cmd_reconcile(args) -> int:
    """Send due retries, enqueue active versions without a job and re-send jobs never sent
    (producer/retries.py, producer/reconciler.py). With ``--loop``: due retries every
    ``retry_poll_interval_s`` and a full pass every ``reconcile_interval_s``, surviving errors (they are
    printed; the next pass retries). One JSON line per full pass, and per poll that sent retries."""
    import time

    from boundaries_cli.loops import run_loop
    from producer.enqueue import Enqueuer
    from producer.reconciler import reconcile
    from producer.retries import dispatch_due_retries

    settings = Settings()
    enq = Enqueuer.from_settings(settings)
    last_full = [float("-inf")]

    def one_pass() -> dict:
        out = {}
        retries = dispatch_due_retries(settings, enq.registry.jobs, enq.celery, limit=args.limit)
        if retries:
            out["retries_sent"] = retries
        if time.monotonic() - last_full[0] >= settings.reconcile_interval_s:
            last_full[0] = time.monotonic()
            out["enqueued"] = reconcile(settings, enq.registry, enq, limit=args.limit)
        return out

    try:
        return run_loop("reconcile", one_pass, loop=args.loop,
                        interval_s=min(settings.retry_poll_interval_s, settings.reconcile_interval_s),
                        liveness_file=settings.liveness_file)
    finally:
        enq.registry.db.close()


def cmd_sweep(args) -> int:
    """Requeue running jobs with stale heartbeats and re-send old queued jobs (producer/sweep.py)."""
    from boundaries_cli.loops import run_loop
    from producer.dispatch import producer_celery
    from producer.sweep import sweep

    settings = Settings()
    reg, _ = _registry(settings)
    app = producer_celery(settings)

    def one_pass() -> dict:
        res = sweep(settings, reg.jobs, app)
        return {"requeued_running": res.requeued_running, "resent_queued": res.resent_queued,
                "dead_lettered": res.dead_lettered}

    try:
        return run_loop("sweep", one_pass, interval_s=settings.heartbeat_stale_s, loop=args.loop,
                        liveness_file=settings.liveness_file)
    finally:
        reg.db.close()


def add_commands(sub) -> None:
    i = sub.add_parser("ingest", help="write a video's caption band to the frame store and register it active")
    i.add_argument("video", type=video_file, help="a video file PyAV can open (mp4, mkv, webm, ...)")
    i.add_argument("--crop", type=parse_crop, required=True, help="caption band L,T,R,B as fractions")
    i.add_argument("--anchor", choices=("left", "center", "right"), default="center",
                   help="caption text alignment in the band (default: center)")
    i.add_argument("--tenant-id", type=uuid_arg, help="tenant UUID of the video (default: a new random one)")
    i.add_argument("--video-id", type=uuid_arg, help="video UUID (default: a new random one)")
    i.add_argument("--version", type=int, default=1,
                   help="cropped-frames version to write and register active (default: 1)")
    i.set_defaults(func=cmd_ingest)

    w = sub.add_parser("worker", help="run a Celery worker (settings from BOUNDARIES_* environment); extra Celery"
                       " worker options go after --, e.g. boundaries worker -- --max-tasks-per-child 100")
    w.add_argument("-l", "--loglevel", default=None,
                   help="DEBUG, INFO, WARNING, ERROR (default: BOUNDARIES_LOG_LEVEL, else INFO)")
    w.add_argument("-Q", "--queues", default=None, help="comma-separated queues to consume (default: both priority"
                   " queues, BOUNDARIES_QUEUE_HIGH,BOUNDARIES_QUEUE_LOW)")
    w.add_argument("-n", "--hostname", default="celery@%h", help="node name, as celery's -n (default celery@%%h)")
    w.add_argument("-P", "--pool", choices=("solo", "prefork"), default="solo",
                   help="solo (default): one job at a time in the worker's main thread; prefork: --concurrency"
                   " jobs at a time in pool processes (worker/boot.py: SIGTERM hands running jobs back in both)")
    w.add_argument("-c", "--concurrency", type=int, default=1,
                   help="jobs at a time (default 1; above 1 needs --pool prefork)")
    w.add_argument("celery_args", nargs="*", metavar="-- CELERY_OPTION",
                   help="passed to `celery worker` verbatim (after --)")
    w.set_defaults(func=cmd_worker)

    s = sub.add_parser("serve", help="run the producer (webhook receiver)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface)")
    s.add_argument("--port", type=int, default=8000, help="TCP port to listen on (default: 8000)")
    s.set_defaults(func=cmd_serve)

    r = sub.add_parser("reconcile", help="send due retries, enqueue active versions that have no job (lost"
                       " webhooks) and re-send jobs never sent")
    r.add_argument("--loop", action="store_true", help="due retries every retry_poll_interval_s, the rest every"
                   " reconcile_interval_s")
    r.add_argument("--limit", type=int, default=1000,
                   help="at most this many due retries and this many versions per pass (default: 1000)")
    r.set_defaults(func=cmd_reconcile)

    sw = sub.add_parser("sweep", help="requeue running jobs whose worker vanished (stale heartbeat) and re-send"
                        " queued jobs untouched for sweep_queued_after_s")
    sw.add_argument("--loop", action="store_true", help="repeat every heartbeat_stale_s")
    sw.set_defaults(func=cmd_sweep)

    from boundaries_cli import dlq

    dlq.add_commands(sub)

    from boundaries_cli import jobs, runs

    runs.add_commands(sub)
    jobs.add_commands(sub)

    from boundaries_cli.ingest_cmds import add_store_command

    add_store_command(sub)
