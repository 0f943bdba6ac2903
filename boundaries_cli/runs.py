"""``boundaries runs list|show|download``: published runs (``boundary_inference_runs``, COMPAT.md §6) and
their results databases (COMPAT.md §5) in the object store.

A run is named by either of its UUIDs: the row's ``id`` (a job's ``inference_run_id``) or its ``run_id``
(what ``boundaries run`` prints and the results database's ``run_metadata`` holds).

Reads ``BOUNDARIES_DATABASE_URL`` / ``BOUNDARIES_DB_SCHEMA`` (the registry) and, for ``show`` and
``download``, the object store settings (``BOUNDARIES_STORAGE_BACKEND``, ``BOUNDARIES_LOCAL_STORE_DIR``
or ``BOUNDARIES_S3_BUCKET``, ``_S3_ENDPOINT_URL``, ``_S3_ACCESS_KEY_ID``, ``_S3_SECRET_ACCESS_KEY``).

Output: see :mod:`boundaries_cli.render` (a table on a terminal, JSON otherwise). Exit codes: 0 done;
1 no such run, or its results database is not in the store; 2 a malformed command.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from boundaries.errors import RecordNotFound
from boundaries_cli import render
from config.settings import Settings

_DESCRIPTION = ("Published runs (boundary_inference_runs) and their results databases in the object store. A run"
                " is named by either of its UUIDs: the row's id (a job's inference_run_id) or its run_id (what"
                " `boundaries run` prints). Exit codes: 0 done; 1 no such run, or its results database is not in the"
                " store; 2 a malformed command.")
_LIST_COLUMNS = [("run_id", "run id"), ("completed_at", "completed"), ("total_pairs", "pairs"),
                 ("video_id", "video"), ("cropped_frames_version", "v"), ("model_version", "model"),
                 ("processing_time_seconds", "seconds")]


def open_db(settings: Settings, holding: str = "runs and jobs"):
    """The registry database of ``settings`` (BOUNDARIES_DATABASE_URL, BOUNDARIES_DB_SCHEMA), checked
    reachable.

    Raises:
        ValueError: BOUNDARIES_DATABASE_URL is not set (the message says the registry holds ``holding``).
        RegistryUnavailable: the database does not answer (``Database.check_reachable``).
    """
    from boundaries.registry.db import Database

    if settings.database_url is None:
        raise ValueError(f"BOUNDARIES_DATABASE_URL is not set (the registry holding {holding})")
    db = Database(settings.database_url.get_secret_value(), settings.db_schema)
    db.check_reachable()  # a database that is down: one line at once, not the pool's 10 s wait
    return db


def location(settings: Settings, key: str) -> str:
    """Where ``key`` lives: ``s3://bucket/key`` or the local file path (one copyable string)."""
    if settings.storage_backend == "local":
        return str(settings.store_root() / key)
    return f"s3://{settings.s3_bucket}/{key}"


def _fetch_results(settings: Settings, run: dict) -> bytes:
    """The run's results database bytes.

    Raises:
        RecordNotFound: its key is not in the store (the message names the location and the settings).
    """
    from boundaries.storage.factory import store_from_settings

    key = run["wasabi_storage_key"]
    try:
        return store_from_settings(settings).get_bytes(key)
    except KeyError as e:
        raise RecordNotFound(f"results database of run {run['run_id']} not found at {location(settings, key)}"
                             " (check BOUNDARIES_STORAGE_BACKEND and BOUNDARIES_S3_BUCKET / "
                             "BOUNDARIES_LOCAL_STORE_DIR)") from e


def _get_run(db, run: str) -> dict:
    from boundaries.registry.queries import get_run

    row = get_run(db, run)
    if row is None:
        raise RecordNotFound(f"no run with id or run_id {run}")
    return row


def cmd_list(args) -> int:
    from boundaries.registry.queries import count_runs, list_runs

    f = dict(tenant_id=args.tenant_id, video_id=args.video_id, model_version=args.model_version, since=args.since,
             until=args.until)
    db = open_db(Settings())
    try:
        rows = list_runs(db, **f, limit=args.limit)
        total = count_runs(db, **f) if len(rows) == args.limit else len(rows)
    finally:
        db.close()
    render.print_list(args, rows, total, command="runs list", noun="runs", order="newest", columns=_LIST_COLUMNS,
                      id_columns=("run_id",))
    return 0


def _load_run(settings: Settings, run_ref: str) -> dict:
    """The run row named by ``run_ref`` (its id or run_id). Raises RecordNotFound."""
    db = open_db(settings)
    try:
        return _get_run(db, run_ref)
    finally:
        db.close()


def cmd_show(args) -> int:
    from boundaries.results_db import read_results_db
    from boundaries.segments import segments_from_labels

    settings = Settings()
    run = _load_run(settings, args.run)
    data = _fetch_results(settings, run)
    results = read_results_db(data)
    segments = segments_from_labels(results["forward_labels"])  # as `boundaries run` (main_job.py) does
    where = location(settings, run["wasabi_storage_key"])
    if render.wants_json(args):
        render.print_json({"run": run, "results_location": where, "pairs": len(results["frame1_index"]),
                           "segments": render.segment_rows(segments)})
        return 0
    out = render.console()
    out.print(render.fields_table(run, title=f"run {run['run_id']}"))
    out.print(render.segment_table(segments))
    out.print(f"results database: {where}", soft_wrap=True)
    out.print(f"pairs:            {len(results['frame1_index'])}")
    return 0


def cmd_download(args) -> int:
    settings = Settings()
    run = _load_run(settings, args.run)
    key = run["wasabi_storage_key"]
    target = args.output or Path(Path(key).name)
    if str(target) != "-" and target.is_dir():
        target = target / Path(key).name
    if str(target) != "-" and target.exists() and not args.force:
        print(f"runs download: {target} exists; add --force to overwrite it", file=sys.stderr)
        return 2
    data = _fetch_results(settings, run)
    if run["file_size_bytes"] is not None and run["file_size_bytes"] != len(data):
        print(f"runs download: warning: {location(settings, key)} holds {len(data)} bytes, the run row says"
              f" {run['file_size_bytes']}", file=sys.stderr)
    if str(target) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)  # never a half-written file at the target
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"runs download: wrote {target} ({len(data)} bytes) from {location(settings, key)}", file=sys.stderr)
    return 0


def add_list_filters(c, noun: str) -> None:
    """The filters of ``runs list`` and ``jobs list`` (``noun``: "runs" / "jobs"): tenant, video, model
    version, ``--since/--until`` (creation time), ``--limit``, and the output flags."""
    from boundaries_cli.args import uuid_arg
    from boundaries_cli.dlq import time_arg

    c.add_argument("--tenant-id", type=uuid_arg, help=f"only this tenant's {noun}")
    c.add_argument("--video-id", type=uuid_arg, help=f"only this video's {noun}")
    c.add_argument("--model-version", help=f"only {noun} of this model version, e.g. classical-v3")
    c.add_argument("--since", type=time_arg, help="created at or after: ISO 8601 time or an age (30m, 2h, 7d)")
    c.add_argument("--until", type=time_arg, help="created before: ISO 8601 time or an age (30m, 2h, 7d)")
    c.add_argument("--limit", type=render.limit_arg, default=50, help="at most this many (default 50)")
    render.add_format_flags(c)


def add_commands(sub) -> None:
    """Register ``runs list|show|download`` on the ``boundaries`` subparsers ``sub``."""
    from boundaries_cli.args import uuid_arg

    r = sub.add_parser("runs", help="published runs and their results databases: list, show, download",
                       description=_DESCRIPTION)
    rsub = r.add_subparsers(dest="runs_command", required=True)

    c = rsub.add_parser("list", help="runs, newest first (stderr says when --limit cut the list)",
                        epilog=f"{render.FORMAT_HELP}.")
    add_list_filters(c, "runs")
    c.set_defaults(func=cmd_list)

    c = rsub.add_parser("show", help="one run's fields and caption segments (from its results database)",
                        epilog=f"{render.FORMAT_HELP}.")
    c.add_argument("run", metavar="RUN_ID", type=uuid_arg, help="the run's id or run_id (both UUIDs)")
    render.add_format_flags(c)
    c.set_defaults(func=cmd_show)

    c = rsub.add_parser("download", help="write a run's results database (SQLite, COMPAT.md §5) to a file",
                        epilog=None)
    c.add_argument("run", metavar="RUN_ID", type=uuid_arg, help="the run's id or run_id (both UUIDs)")
    c.add_argument("-o", "--output", type=Path, metavar="PATH",
                   help="file or directory to write (default: the key's file name in the current directory;"
                        " '-': stdout)")
    c.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    c.set_defaults(func=cmd_download)
