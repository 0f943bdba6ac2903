"""Storage keys of the frame store, results and shard outputs (COMPAT.md §1, §5).

Ids are validated as UUIDs before they are formatted into any key.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from boundaries.frames.layout import ChunkRef
from boundaries.ids import validate_uuid

CHUNK_KEY_RE = re.compile(r"(?:^|/)modulo_(16|4|1)/chunk_(\d+)\.webm$")


def frames_prefix(template: str, tenant_id: str, video_id: str, version: int) -> str:
    """Prefix of one cropped-frames version, always ending in ``/``."""
    prefix = template.format(
        tenant_id=validate_uuid(tenant_id, "tenant_id"),
        video_id=validate_uuid(video_id, "video_id"),
        version=int(version),
    )
    return prefix if prefix.endswith("/") else prefix + "/"


#: ``-{YYYYmmddTHHMMSS}-{6 hex}`` appended to a version's prefix by each ingest (:func:`ingest_prefix`)
INGEST_SUFFIX_RE = r"-(?P<stamp>\d{8}T\d{6})-[0-9a-f]{6}"
INGEST_LAYOUT_DB = "layout.db"
_UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def new_ingest_id(now: datetime | None = None) -> str:
    """``YYYYmmddTHHMMSS-xxxxxx``: UTC start time (so a stored prefix tells its age) + 24 random bits."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def ingest_prefix(template: str, tenant_id: str, video_id: str, version: int, ingest_id: str) -> str:
    """Prefix one ingest writes under: the version's prefix with ``-{ingest_id}`` appended to its last
    segment, e.g. ``{tenant}/{video}/cropped_frames_v1-20261130T210900-3f9a1c/``. Every ingest writes
    to a fresh prefix (never into a version's live chunks); the registry row's ``storage_prefix`` is
    switched to it when the ingest is complete, and readers follow ``storage_prefix`` (COMPAT.md §6)."""
    if not re.fullmatch(INGEST_SUFFIX_RE[1:], ingest_id):
        raise ValueError(f"ingest_id must look like YYYYmmddTHHMMSS-xxxxxx, got {ingest_id!r}")
    return frames_prefix(template, tenant_id, video_id, version).rstrip("/") + f"-{ingest_id}/"


def frames_prefix_regex(template: str) -> re.Pattern:
    """Regex matching the start of any key under a frames prefix of ``template``, with or without an
    ingest suffix. Groups: ``prefix`` (ending in ``/``), ``stamp`` (ingest start, or None)."""
    parts = re.split(r"(\{tenant_id\}|\{video_id\}|\{version\})", template.rstrip("/"))
    body = "".join({"{tenant_id}": _UUID_RE, "{video_id}": _UUID_RE, "{version}": r"\d+"}.get(p, re.escape(p))
                   for p in parts)
    return re.compile(rf"^(?P<prefix>{body}(?:{INGEST_SUFFIX_RE})?/)")


def layout_db_key(template: str, tenant_id: str, video_id: str) -> str:
    return template.format(
        tenant_id=validate_uuid(tenant_id, "tenant_id"), video_id=validate_uuid(video_id, "video_id")
    )


def chunk_key(prefix: str, chunk: ChunkRef) -> str:
    """``{prefix}modulo_{level}/chunk_{start:010d}.webm``: what the upstream writer uploads."""
    return f"{prefix}modulo_{chunk.level}/chunk_{chunk.start:010d}.webm"


def parse_chunk_key(key: str) -> ChunkRef | None:
    """ChunkRef of a listed key (any zero padding), or None for keys that are not chunks."""
    m = CHUNK_KEY_RE.search(key)
    if not m:
        return None
    return ChunkRef(int(m.group(1)), int(m.group(2)))


def results_filename(version: int, model_version: str, run_id: str) -> str:
    """``v{version}_model-{model_version[:8]}_run-{run_id[:8]}.db`` (COMPAT.md §5)."""
    return f"v{int(version)}_model-{model_version[:8]}_run-{run_id[:8]}.db"


def results_key(template: str, tenant_id: str, video_id: str, filename: str) -> str:
    return template.format(
        tenant_id=validate_uuid(tenant_id, "tenant_id"),
        video_id=validate_uuid(video_id, "video_id"),
        filename=filename,
    )


_SAFE_MODEL_VERSION = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def shard_output_key(template: str, tenant_id: str, video_id: str, version: int, model_version: str,
                     first_pair: int, end_pair: int) -> str:
    """Deterministic key of one shard's output: the same shard always writes the same key."""
    if not _SAFE_MODEL_VERSION.match(model_version):
        raise ValueError(f"model_version must match {_SAFE_MODEL_VERSION.pattern}, got {model_version!r}")
    return template.format(
        tenant_id=validate_uuid(tenant_id, "tenant_id"),
        video_id=validate_uuid(video_id, "video_id"),
        version=int(version),
        model_version=model_version,
        first_pair=first_pair,
        end_pair=end_pair,
    )
