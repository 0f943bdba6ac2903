"""The job event: what the producer enqueues and the worker processes (a Celery task's kwargs).

Tasks receive ids and keys, never blobs (STYLE.md). The idempotency key of a job is
``(video_id, cropped_frames_version, model_version)`` — the UNIQUE key of
``boundary_inference_runs`` (COMPAT.md §6).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from boundaries.ids import validate_uuid

PROCESS_VIDEO_TASK = "boundaries.process_video"
MODEL_VERSION_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"


class JobEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    video_id: str
    tenant_id: str
    cropped_frames_version: int = Field(ge=0)
    model_version: str = Field(pattern=MODEL_VERSION_PATTERN)
    priority: Literal["high", "low"] = "high"
    source: Literal["webhook", "reconciler", "replay", "cli", "sweep", "retry"] = "webhook"
    job_id: str | None = None
    """Row id in ``boundary_inference_jobs`` once recorded (set by the enqueuer)."""
    received_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("video_id", "tenant_id", mode="before")
    @classmethod
    def _uuid(cls, v, info):
        return validate_uuid(v, info.field_name)

    @classmethod
    def from_job_row(cls, row: dict, source: str) -> JobEvent:
        """The event of a recorded job (a ``boundary_inference_jobs`` row, COMPAT.md §6), to send it again."""
        return cls(video_id=str(row["video_id"]), tenant_id=str(row["tenant_id"]),
                   cropped_frames_version=row["cropped_frames_version"], model_version=row["model_version"],
                   priority=row["priority"], source=source, job_id=str(row["id"]))

    @property
    def idempotency_key(self) -> str:
        return f"{self.video_id}:{self.cropped_frames_version}:{self.model_version}"
