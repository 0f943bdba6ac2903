"""``boundaries ingest`` (with a progress bar on a terminal) and ``boundaries store orphans``.

Ingest writes a fresh prefix and switches the version row to it in one step
(:mod:`boundaries.ingest`, :func:`boundaries.registry.frame_versions.publish_version`); the orphan
sweep lists, and with ``--delete`` removes, frame-store prefixes no version row refers to
(:mod:`boundaries.frames.orphans`).
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from config.settings import Settings


class FramesPerSecondColumn(ProgressColumn):
    """``123 frames/s`` (rich's own speed estimate of the task), blank until known."""

    def render(self, task) -> Text:
        return Text(f"{task.speed:5.0f} frames/s" if task.speed else "", style="progress.data.speed")


def ingest_progress(console: Console) -> Progress:
    """Frames done / expected, rate and ETA; draws nothing when ``console`` is not a terminal."""
    return Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                    FramesPerSecondColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console, disable=not console.is_terminal, transient=False)


def _database(settings: Settings):
    from worker.deps import database

    db = database(settings)
    db.migrate()
    return db


def cmd_ingest(args) -> int:
    from boundaries.ingest import ingest_video
    from boundaries.registry.frame_versions import publish_version
    from boundaries.storage.factory import store_from_settings

    settings = Settings()
    store = store_from_settings(settings)
    if hasattr(store, "check_bucket"):
        store.check_bucket()  # a missing bucket: one line naming BOUNDARIES_S3_BUCKET before any frame is decoded
    db = _database(settings)
    tenant_id = args.tenant_id or str(uuid.uuid4())
    video_id = args.video_id or str(uuid.uuid4())

    def publish(r):
        publish_version(db, video_id=video_id, tenant_id=tenant_id, version=args.version,
                        storage_prefix=r.frames_prefix, layout_db_storage_key=r.layout_db_key,
                        total_frames=r.total_frames, chunk_count=r.chunk_count)

    with ingest_progress(Console(stderr=True)) as progress:
        task = progress.add_task("ingest", total=None)
        res = ingest_video(Path(args.video), args.crop, args.anchor, store, settings,
                           tenant_id, video_id, args.version, publish=publish,
                           expected=lambda n: progress.update(task, total=n),
                           progress=lambda n: progress.update(task, completed=n))
        progress.update(task, total=res.total_frames, completed=res.total_frames)
    print(json.dumps({"tenant_id": tenant_id, "video_id": video_id, "version": args.version,
                      "total_frames": res.total_frames, "chunk_count": res.chunk_count,
                      "frames_prefix": res.frames_prefix, "layout_db_key": res.layout_db_key,
                      "damaged_packets": res.damaged_packets, "expected_frames": res.expected_frames}))
    return 0


def cmd_store(args) -> int:
    from boundaries.frames.orphans import delete_orphans, find_orphans
    from boundaries.registry.frame_versions import forget_retired, store_references
    from boundaries.storage.factory import store_from_settings

    settings = Settings()
    db = _database(settings)
    store = store_from_settings(settings)
    orphans = find_orphans(store, settings.frames_prefix_template, store_references(db), under=args.under,
                           grace=timedelta(hours=args.grace_h), include_undated=args.include_undated)
    deleted = delete_orphans(store, orphans) if args.delete else []
    forget_retired(db, deleted)
    for o in orphans:
        print(json.dumps({"prefix": o.prefix, "objects": len(o.keys),
                          "ingest_started_at": o.started_at.isoformat() if o.started_at else None,
                          "deletable": o.deletable, "reason": o.reason, "deleted": o.prefix in deleted}))
    print(f"{len(orphans)} unreferenced prefixes ({sum(len(o.keys) for o in orphans)} objects), "
          f"{sum(o.deletable for o in orphans)} past the grace; deleted {len(deleted)}", file=sys.stderr)
    return 0


def add_store_command(sub) -> None:
    st = sub.add_parser("store", help="frame-store maintenance: objects no version refers to")
    ssub = st.add_subparsers(dest="store_command", required=True)
    o = ssub.add_parser("orphans", help="list (and with --delete remove) frame-store prefixes that no"
                        " cropped_frames_versions row refers to: interrupted ingests, replaced prefixes")
    o.add_argument("--under", default="", help="only keys under this prefix, e.g. a tenant id + '/'")
    o.add_argument("--grace-h", type=float, default=24.0,
                   help="keep ingests started and prefixes replaced less than this many hours ago")
    o.add_argument("--include-undated", action="store_true",
                   help="also delete unreferenced prefixes without an ingest time in their name")
    o.add_argument("--delete", action="store_true", help="delete the orphans past the grace")
    st.set_defaults(func=cmd_store)
