"""Supabase Database Webhook payloads (COMPAT.md §7) and the choice of which ones start a job.

Envelope: ``{"type": "INSERT"|"UPDATE"|"DELETE", "table", "schema", "record", "old_record"}``;
``record`` is null on DELETE, ``old_record`` null on INSERT, any column may be null, unknown
columns are ignored. The decision is made from the raw columns first: an event the producer does not
act on (a DELETE, a row that is not being activated, an unchanged version) is ignored with its reason
(HTTP 200) whatever its other columns hold, e.g. a malformed ``old_record.id`` (COMPAT.md §7). Only
the record of an event we act on is typed: a wrong type or a non-UUID id there is a validation error
(HTTP 422), a null is tolerated (the event is ignored with a reason).

"Frames cropped" (COMPAT.md §6) is either
- ``cropped_frames_versions`` INSERT/UPDATE whose ``record.status`` is ``active`` and whose
  ``old_record`` is absent or not ``active``; or
- ``videos`` UPDATE where ``current_cropped_frames_version`` changed and is not null.
Both spellings of the same activation yield the same idempotency key, so one job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from boundaries.ids import validate_uuid

VERSIONS_TABLE = "cropped_frames_versions"
VIDEOS_TABLE = "videos"


def _uuid_or_none(v: Any, info) -> str | None:
    return None if v is None else validate_uuid(v, info.field_name)


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class VersionRecord(_Record):
    """A ``cropped_frames_versions`` row (COMPAT.md §6); columns other than these are ignored."""

    id: str | None = None
    video_id: str | None = None
    tenant_id: str | None = None
    version: StrictInt | None = Field(None, ge=0, le=2**31 - 1)
    status: StrictStr | None = None

    check_ids = field_validator("id", "video_id", "tenant_id", mode="before")(_uuid_or_none)


class VideoRecord(_Record):
    """A ``videos`` row (COMPAT.md §6); columns other than these are ignored."""

    id: str | None = None
    tenant_id: str | None = None
    current_cropped_frames_version: StrictInt | None = Field(None, ge=0, le=2**31 - 1)
    deleted_at: StrictStr | None = None

    check_ids = field_validator("id", "tenant_id", mode="before")(_uuid_or_none)


class WebhookEnvelope(BaseModel):
    """The outer payload; ``record``/``old_record`` stay raw until the table is known."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    type: Literal["INSERT", "UPDATE", "DELETE"]
    table: StrictStr = Field(max_length=128)
    schema_name: StrictStr | None = Field(None, alias="schema", max_length=128)
    record: dict[str, Any] | None = None
    old_record: dict[str, Any] | None = None


@dataclass(frozen=True)
class Selection:
    """What to do with a webhook: ``selected`` (version set) → enqueue; else ignored for ``reason``."""

    reason: str
    code: str = "selected"
    """Short fixed code of the reason (a metrics label; never payload text)."""
    video_id: str | None = None
    tenant_id: str | None = None
    version: int | None = None

    @property
    def selected(self) -> bool:
        return self.version is not None


def _ignored(code: str, reason: str) -> Selection:
    return Selection(reason=reason, code=code)


def select_event(env: WebhookEnvelope, tables: tuple[str, ...] | list[str],
                 schemas: tuple[str, ...] | list[str] | None = None) -> Selection:
    """Decide whether ``env`` is a "frames cropped" event.

    ``tables`` is ``settings.webhook_tables``; a table not listed there is ignored. ``schemas``: the
    schemas whose events count (None: any); an event from another one is ignored, one whose
    ``schema`` is null is taken (COMPAT.md §7 lets any field be null).

    Raises:
        pydantic.ValidationError: a typed column (ids, version, status) has a wrong type or a
            non-UUID id.
    """
    if schemas is not None and env.schema_name is not None and env.schema_name not in schemas:
        return _ignored("schema", f"schema {env.schema_name!r} not watched (watching {', '.join(schemas)})")
    if env.table not in tables:
        return _ignored("table", f"table {env.table!r} not watched")
    if env.table == VERSIONS_TABLE:
        return _select_version(env)
    if env.table == VIDEOS_TABLE:
        return _select_video(env)
    return _ignored("table", f"table {env.table!r} has no event rule")


def _raw(record: dict[str, Any] | None, field: str) -> Any:
    return None if record is None else record.get(field)


def _select_version(env: WebhookEnvelope) -> Selection:
    # Decide from the raw columns first: an event we do not act on is ignored with its reason whatever its
    # other columns hold (a DELETE's old_record, a malformed id in a row that is not being activated);
    # only the record we enqueue is validated (a bad id there is a 422).
    if env.type not in ("INSERT", "UPDATE"):
        return _ignored("type", f"{env.type} on {VERSIONS_TABLE}")
    if env.record is None:
        return _ignored("null_record", "record is null")
    status = _raw(env.record, "status")
    if status is not None and not isinstance(status, str):
        VersionRecord.model_validate(env.record)  # the deciding column has a wrong type: 422 naming it
    if status != "active":
        return _ignored("not_active", f"status is {str(status)!r:.40}, not 'active'")
    if _raw(env.old_record, "status") == "active":
        return _ignored("already_active", "version was already active")
    rec = VersionRecord.model_validate(env.record)
    for field in ("video_id", "tenant_id", "version"):
        if getattr(rec, field) is None:
            return _ignored("null_field", f"record.{field} is null")
    return Selection(reason="version activated", video_id=rec.video_id, tenant_id=rec.tenant_id,
                     version=rec.version)


def _select_video(env: WebhookEnvelope) -> Selection:
    if env.type != "UPDATE":
        return _ignored("type", f"{env.type} on {VIDEOS_TABLE}")
    if env.record is None:
        return _ignored("null_record", "record is null")
    current = _raw(env.record, "current_cropped_frames_version")
    if current is None:
        return _ignored("null_field", "current_cropped_frames_version is null")
    if env.old_record is not None and _raw(env.old_record, "current_cropped_frames_version") == current:
        return _ignored("unchanged", "current_cropped_frames_version unchanged")
    if _raw(env.record, "deleted_at") is not None:
        return _ignored("deleted", "video is deleted")
    rec = VideoRecord.model_validate(env.record)
    for field in ("id", "tenant_id"):
        if getattr(rec, field) is None:
            return _ignored("null_field", f"record.{field} is null")
    return Selection(reason="current version changed", video_id=rec.id, tenant_id=rec.tenant_id,
                     version=rec.current_cropped_frames_version)
