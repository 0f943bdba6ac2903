"""``boundaries dlq list|show|replay|purge``: dead letters for an operator after an outage.

Filters (list, replay, purge): ``--error-type``, ``--video-id``, ``--tenant-id``, ``--since``/``--until``
(a time window on ``created_at``: ISO 8601, naive = UTC, or an age like ``90s``, ``30m``, ``2h``, ``7d``),
``--older-than-h`` (same as ``--until`` that many hours ago). ``list`` and ``replay`` skip dead letters
already replayed unless ``--include-replayed``.

Output: ``list`` and ``show`` print a table on a terminal and JSON otherwise (a pipe, a file; ``--json``
/ ``--table`` force either: boundaries_cli/render.py); ``list``'s JSON is an array, so ``jq -r '.[].id'``
works. ``replay`` and ``purge`` print JSON (``replay``: ``{"summary": {...}, "results": [...]}``).
Notices (a list cut by ``--limit``, replay progress on a terminal, the replay's one-line summary) on
stderr. Exit codes: 0 done; 1 a replay left a dead letter neither queued nor already done (failed, not
found, skipped); 2 a refused or malformed command; a service down or a setting missing as every command
(boundaries_cli/exits.py: 69, 78; 141 when stdout closes early).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta

from boundaries_cli import render
from config.settings import Settings

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def time_arg(text: str) -> datetime:
    """argparse type for ``--since``/``--until``: ISO 8601 (naive means UTC) or an age (``30m``, ``2h``,
    ``7d``, ``90s``) before now. Returns an aware UTC datetime."""
    m = _AGE.match(text.strip())
    if m:
        return datetime.now(UTC) - timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
    try:
        t = datetime.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"must be an ISO 8601 time or an age like 30m, 2h, 7d; got {text!r}") from e
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def rate_arg(text: str) -> float:
    """argparse type for ``--rate``: jobs per second, >= 0 (0: no limit)."""
    try:
        v = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"must be a number of jobs per second, got {text!r}") from e
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 jobs per second (0: no limit), got {text!r}")
    return v


def _open(settings: Settings):
    from boundaries.registry.dead_letters import DeadLetters
    from boundaries_cli.runs import open_db

    db = open_db(settings, holding="the dead letters")
    return db, DeadLetters(db)


def _filters(args) -> dict:
    until = args.until
    if args.older_than_h is not None:
        older = datetime.now(UTC) - timedelta(hours=args.older_than_h)
        until = older if until is None else min(until, older)
    return dict(video_id=args.video_id, tenant_id=args.tenant_id, error_type=args.error_type, newer_than=args.since,
                older_than=until)


def _has_filter(args) -> bool:
    return any(v is not None for v in _filters(args).values())


def _dump(obj) -> None:
    print(json.dumps(obj, default=str, indent=2))


_LIST_COLUMNS = [("id", "dead letter id"), ("created_at", "created"), ("error_type", "error type"),
                 ("error_message", "error"), ("video_id", "video"), ("cropped_frames_version", "v"),
                 ("model_version", "model"), ("replay_count", "replays")]
_ATTEMPT_COLUMNS = [("attempt", "#"), ("outcome", "outcome"), ("error_type", "error type"),
                    ("error_message", "error"), ("started_at", "started"), ("finished_at", "finished"),
                    ("worker", "worker")]


def cmd_list(args) -> int:
    db, dl = _open(Settings())
    try:
        f = _filters(args)
        rows = dl.list(**f, include_replayed=args.include_replayed, limit=args.limit)
        total = dl.count(**f, include_replayed=args.include_replayed) if len(rows) == args.limit else len(rows)
        render.print_list(args, rows, total, command="dlq list", noun="dead letters", order="oldest",
                          columns=_LIST_COLUMNS, id_columns=("id",))
        return 0
    finally:
        db.close()


def cmd_show(args) -> int:
    db, dl = _open(Settings())
    try:
        row = dl.get(args.id)
        if row is None:
            print(f"no dead letter with id {args.id}", file=sys.stderr)
            return 1
        if render.wants_json(args):
            render.print_json(row)
            return 0
        out = render.console()
        out.print(render.fields_table(row, title=f"dead letter {args.id}", skip=("event", "attempts", "traceback")))
        attempts = [render.parsed_times(a) for a in row["attempts"] or []]
        out.print(render.rows_table(attempts, _ATTEMPT_COLUMNS, title="attempts", fold=("error_message",)))
        out.print("event:", json.dumps(row["event"], default=str), soft_wrap=True)
        if row["traceback"]:
            out.print("traceback:", soft_wrap=True)
            out.print(row["traceback"], markup=False, highlight=False, soft_wrap=True)
        return 0
    finally:
        db.close()


def cmd_purge(args) -> int:
    if not (args.ids or _has_filter(args) or args.all):
        print("dlq purge: refusing to delete without a selection: give ids, a filter (--error-type, --video-id,"
              " --tenant-id, --since, --until, --older-than-h) or --all --yes for every dead letter", file=sys.stderr)
        return 2
    if args.all and not args.yes:
        print("dlq purge --all deletes every dead letter, replayed or not: add --yes to confirm", file=sys.stderr)
        return 2
    if args.all and (args.ids or _has_filter(args)):
        print("dlq purge: --all takes no ids or filters", file=sys.stderr)
        return 2
    db, dl = _open(Settings())
    try:
        ids = args.ids or [str(r["id"]) for r in dl.list(**_filters(args), include_replayed=True, limit=10**9)]
        _dump({"purged": dl.purge(ids)})
        return 0
    finally:
        db.close()


def cmd_replay(args) -> int:
    from boundaries.registry.dead_letters import DeadLetters
    from producer.enqueue import Enqueuer
    from producer.replay import Replayer

    if args.ids and (_has_filter(args) or args.all):
        print("dlq replay: give ids or filters/--all, not both", file=sys.stderr)
        return 2
    if not (args.ids or _has_filter(args) or args.all):
        print("dlq replay: give dead-letter ids, a filter (--error-type, --video-id, --tenant-id, --since, --until,"
              " --older-than-h) or --all (every dead letter not replayed yet)", file=sys.stderr)
        return 2
    settings = Settings()
    enq = Enqueuer.from_settings(settings)
    dl = DeadLetters(enq.registry.db)
    try:
        enq.registry.db.check_reachable()  # a database that is down: one line at once, not the pool's 10 s wait
        ids = args.ids or [str(r["id"]) for r in dl.list(**_filters(args), include_replayed=args.include_replayed,
                                                          limit=args.limit or 10**9)]
        replayer = Replayer(settings, enq, dl, priority=args.priority, rate_per_s=args.rate, dry_run=args.dry_run)
        summary = _run_with_progress(replayer, ids)
    finally:
        enq.registry.db.close()
    _dump(summary.as_json())
    c = summary.counts()
    verb = "would replay" if args.dry_run else "replayed"
    noun = "dead letter" if len(ids) == 1 else "dead letters"
    counts = ", ".join(f"{n} {k}" for k, n in c.items())
    if summary.interrupted:
        done = sum(o.status != "skipped" for o in summary.outcomes)
        print(f"dlq replay: interrupted (Ctrl-C) after {done} of {len(ids)} {noun} to {replayer.queue} in"
              f" {summary.seconds:.1f} s: {counts} — run the same command again for the rest (those sent are"
              " marked replayed; sending one again answers duplicate)", file=sys.stderr)
        return 130
    print(f"dlq replay: {verb} {len(ids)} {noun} to {replayer.queue} in {summary.seconds:.1f} s: {counts}",
          file=sys.stderr)
    unsent = [o for o in summary.outcomes if o.status == "failed" and (o.error or "").startswith("unavailable: ")]
    if unsent:  # the broker or the registry went away: a service error (69), the rest were not tried
        print(f"boundaries dlq replay: error: {unsent[0].error.removeprefix('unavailable: ')[:300]} — check"
              " BOUNDARIES_REDIS_URL (the broker) and BOUNDARIES_DATABASE_URL, then run the same command again"
              " (jobs not sent are as they were)", file=sys.stderr)
        return 69
    return 0 if summary.ok else 1


def _run_with_progress(replayer, ids: list[str]):
    """Replay with a rich progress bar on stderr when it is a terminal; plain otherwise."""
    if not sys.stderr.isatty() or not ids:
        return replayer.replay(ids)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    counts: dict[str, int] = {}
    with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}"), console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("", total=len(ids))

        def step(out) -> None:
            counts[out.status] = counts.get(out.status, 0) + 1
            bar.update(task, advance=1, description=" ".join(f"{k} {n}" for k, n in sorted(counts.items())))

        return replayer.replay(ids, on_outcome=step)


def _add_filters(c, *, replayed_flag: bool) -> None:
    from boundaries_cli.args import uuid_arg

    c.add_argument("--video-id", type=uuid_arg, help="only dead letters of this video (UUID)")
    c.add_argument("--tenant-id", type=uuid_arg, help="only dead letters of this tenant (UUID)")
    c.add_argument("--error-type", help="e.g. layout_error, missing_frames, shard_failed")
    c.add_argument("--since", type=time_arg, help="created at or after: ISO 8601 time or an age (30m, 2h, 7d)")
    c.add_argument("--until", type=time_arg, help="created before: ISO 8601 time or an age (30m, 2h, 7d)")
    c.add_argument("--older-than-h", type=float, help="only dead letters older than this many hours")
    if replayed_flag:
        c.add_argument("--include-replayed", action="store_true", help="also dead letters replayed before")


def add_commands(sub) -> None:
    """Register ``dlq list|show|replay|purge`` on the ``boundaries`` subparsers ``sub``."""
    from boundaries_cli.args import uuid_arg

    d = sub.add_parser("dlq", help="dead letters: list, show, replay, purge")
    dsub = d.add_subparsers(dest="dlq_command", required=True)

    c = dsub.add_parser("list", help="dead letters, oldest first (stderr says when --limit cut it)",
                        epilog=render.FORMAT_HELP + "; JSON is an array of objects")
    _add_filters(c, replayed_flag=True)
    c.add_argument("--all", dest="include_replayed", action="store_true", help="same as --include-replayed")
    c.add_argument("--limit", type=int, default=100, help="at most this many, oldest first (default: 100)")
    render.add_format_flags(c)
    c.set_defaults(func=cmd_list)

    c = dsub.add_parser("show", help="one dead letter with its event, traceback and attempts",
                        epilog=render.FORMAT_HELP)
    c.add_argument("id", type=uuid_arg, help="the dead letter's id (UUID, from dlq list)")
    render.add_format_flags(c)
    c.set_defaults(func=cmd_show)

    c = dsub.add_parser("replay", help="send dead-lettered jobs again (by id, or every one matching the filters)")
    c.add_argument("ids", nargs="*", type=uuid_arg, help="dead-letter ids (UUIDs, from dlq list); or use filters")
    _add_filters(c, replayed_flag=True)
    c.add_argument("--all", action="store_true", help="every dead letter not replayed yet (no filter)")
    c.add_argument("--limit", type=int, help="at most this many (oldest first)")
    c.add_argument("--dry-run", action="store_true", help="send nothing; say what would be sent")
    c.add_argument("--rate", type=rate_arg,
                   help="jobs sent per second (default BOUNDARIES_REPLAY_RATE_PER_S; 0: no limit)")
    c.add_argument("--priority", choices=("high", "low"),
                   help="queue to send to (default BOUNDARIES_REPLAY_PRIORITY, low: fresh events go first)")
    c.set_defaults(func=cmd_replay)

    c = dsub.add_parser("purge", help="delete dead letters (ids or filters; everything only with --all --yes)")
    c.add_argument("ids", nargs="*", type=uuid_arg, help="dead-letter ids (UUIDs) to delete; or use filters")
    _add_filters(c, replayed_flag=False)
    c.add_argument("--all", action="store_true", help="every dead letter (needs --yes)")
    c.add_argument("--yes", action="store_true", help="confirm --all")
    c.set_defaults(func=cmd_purge)
