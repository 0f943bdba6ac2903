"""``boundaries jobs list|show``: inference jobs (``boundary_inference_jobs``), their attempts, run and
dead letters. Read-only (the job state machine is boundaries/registry/jobs.py).

Reads ``BOUNDARIES_DATABASE_URL`` / ``BOUNDARIES_DB_SCHEMA``. Output: see :mod:`boundaries_cli.render` (a
table on a terminal, JSON otherwise). Exit codes: 0 done; 1 no such job; 2 a malformed command.

Attempts are counted when they start (a worker killed mid-attempt leaves one ``abandoned``); each names
the worker that ran it (Celery node name and pid; empty for attempts recorded before migration 011).
"""

from __future__ import annotations

from boundaries_cli import render
from boundaries_cli.runs import open_db
from config.settings import Settings

_DESCRIPTION = ("Inference jobs (boundary_inference_jobs) with their attempts, run and dead letters; read-only."
                " Exit codes: 0 done; 1 no such job; 2 a malformed command.")
_LIST_COLUMNS = [("id", "job id"), ("status", "status"), ("attempts", "attempts"), ("created_at", "created"),
                 ("error_message", "error"), ("video_id", "video"), ("cropped_frames_version", "v"),
                 ("model_version", "model"), ("priority", "priority")]
_ATTEMPT_COLUMNS = [("attempt", "#"), ("outcome", "outcome"), ("error_type", "error type"),
                    ("error_message", "error"), ("started_at", "started"), ("finished_at", "finished"),
                    ("worker", "worker")]
_DEAD_COLUMNS = [("id", "dead letter id"), ("created_at", "created"), ("error_type", "error type"),
                 ("replay_count", "replays"), ("replayed_at", "replayed")]


def cmd_list(args) -> int:
    from boundaries.registry.queries import count_jobs, list_jobs

    f = dict(tenant_id=args.tenant_id, video_id=args.video_id, model_version=args.model_version,
             status=args.status, since=args.since, until=args.until)
    db = open_db(Settings())
    try:
        rows = list_jobs(db, **f, limit=args.limit)
        total = count_jobs(db, **f) if len(rows) == args.limit else len(rows)
    finally:
        db.close()
    render.print_list(args, rows, total, command="jobs list", noun="jobs", order="newest", columns=_LIST_COLUMNS,
                      id_columns=("id",))
    return 0


def cmd_show(args) -> int:
    from boundaries.registry.queries import job_detail

    db = open_db(Settings())
    try:
        detail = job_detail(db, args.id)
    finally:
        db.close()
    if detail is None:
        from boundaries.errors import RecordNotFound

        raise RecordNotFound(f"no job with id {args.id}")
    if render.wants_json(args):
        render.print_json(detail)
        return 0
    out = render.console()
    out.print(render.fields_table(detail["job"], title=f"job {args.id}"))
    out.print(render.rows_table(detail["attempts"], _ATTEMPT_COLUMNS, title="attempts", fold=("error_message",)))
    run = detail["run"]
    if run is not None:
        out.print(f"run:          {run['run_id']} (boundaries runs show {run['run_id']})", soft_wrap=True)
    for d in detail["dead_letters"]:
        out.print(f"dead letter:  {d['id']} ({d['error_type']}; boundaries dlq show {d['id']})", soft_wrap=True)
    if detail["dead_letters"]:
        out.print(render.rows_table(detail["dead_letters"], _DEAD_COLUMNS, title="dead letters", ids=("id",)))
    return 0


def add_commands(sub) -> None:
    """Register ``jobs list|show`` on the ``boundaries`` subparsers ``sub``."""
    from boundaries.registry.queries import JOB_STATUSES
    from boundaries_cli.args import uuid_arg
    from boundaries_cli.runs import add_list_filters

    j = sub.add_parser("jobs", help="inference jobs: list, show (with attempts, run and dead letters)",
                       description=_DESCRIPTION)
    jsub = j.add_subparsers(dest="jobs_command", required=True)

    c = jsub.add_parser("list", help="jobs, newest first (stderr says when --limit cut the list)",
                        epilog=f"{render.FORMAT_HELP}.")
    add_list_filters(c, "jobs")
    c.add_argument("--status", "--state", dest="status", choices=JOB_STATUSES, help="only jobs in this state")
    c.set_defaults(func=cmd_list)

    c = jsub.add_parser("show", help="one job: its row, attempts (start, end, outcome, error, worker), run and"
                        " dead letters",
                        epilog=f"{render.FORMAT_HELP}.")
    c.add_argument("id", metavar="JOB_ID", type=uuid_arg, help="the job's id (a UUID)")
    render.add_format_flags(c)
    c.set_defaults(func=cmd_show)
