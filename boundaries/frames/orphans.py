"""Objects of the frame store that no cropped-frames version refers to (interrupted ingests, replaced
prefixes), found by listing the store and comparing with the registry.

Only keys under a frames prefix of ``settings.frames_prefix_template`` (with or without an ingest
suffix, :func:`boundaries.frames.keys.frames_prefix_regex`) are considered; results, shard outputs
and per-video ``layout.db`` files never are. A prefix is an orphan when no version row's
``storage_prefix`` is it, and it is not young:

- an ingest prefix (``...-YYYYmmddTHHMMSS-xxxxxx/``) started less than ``grace`` ago may still be
  being written: kept;
- a prefix a re-ingest replaced less than ``grace`` ago (``frame_store_retired``) may still be read
  by a job that located the version before the switch: kept;
- a prefix without an ingest suffix (written by another tool, age unknown) is listed but only
  deleted with ``include_undated`` (it may be an upstream write whose row is not there yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from boundaries.frames.keys import frames_prefix_regex
from boundaries.registry.frame_versions import References
from boundaries.storage.base import ObjectStore

log = structlog.get_logger(__name__)

DEFAULT_GRACE = timedelta(hours=24)


@dataclass
class Orphan:
    """One unreferenced prefix: its keys, when its ingest started (None: unknown), whether to delete."""

    prefix: str
    keys: list[str]
    started_at: datetime | None
    deletable: bool
    reason: str


def find_orphans(store: ObjectStore, template: str, refs: References, *, under: str = "",
                 grace: timedelta = DEFAULT_GRACE, include_undated: bool = False,
                 now: datetime | None = None) -> list[Orphan]:
    """Unreferenced frame-store prefixes under ``under`` (a key prefix; "" lists the whole store), in
    key order. Young ones (see the module doc) are returned with ``deletable=False``."""
    now = now or datetime.now(UTC)
    pattern = frames_prefix_regex(template)
    groups: dict[str, tuple[datetime | None, list[str]]] = {}
    for key in store.list_keys(under):
        m = pattern.match(key)
        if not m or m["prefix"] in refs.prefixes:
            continue
        stamp = datetime.strptime(m["stamp"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC) if m["stamp"] else None
        groups.setdefault(m["prefix"], (stamp, []))[1].append(key)
    out = []
    for prefix, (stamp, keys) in groups.items():
        retired = refs.retired.get(prefix)
        if retired is not None and now - retired < grace:
            out.append(Orphan(prefix, keys, stamp, False, f"replaced {retired:%Y-%m-%d %H:%M} UTC, within the grace"))
        elif stamp is not None and now - stamp < grace:
            out.append(Orphan(prefix, keys, stamp, False, "ingest started within the grace (may be running)"))
        elif stamp is None and not include_undated:
            out.append(Orphan(prefix, keys, None, False, "no ingest time in the name (use --include-undated)"))
        else:
            out.append(Orphan(prefix, keys, stamp, True, "unreferenced"))
    return out


def delete_orphans(store: ObjectStore, orphans: list[Orphan]) -> list[str]:
    """Delete every key of the deletable orphans; returns the prefixes deleted."""
    done = []
    for o in orphans:
        if not o.deletable:
            continue
        for key in o.keys:
            store.delete(key)
        done.append(o.prefix)
        log.info("frames.orphans_deleted", prefix=o.prefix, objects=len(o.keys))
    return done


def delete_prefix(store: ObjectStore, prefix: str) -> int:
    """Delete every object under ``prefix`` (one ingest's own writes); returns how many."""
    keys = list(store.list_keys(prefix))
    for key in keys:
        store.delete(key)
    return len(keys)
