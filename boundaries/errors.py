"""Errors of the domain package.

Tree (shallow, by what the pipeline does with them)::

    BoundariesError
    ├── PermanentError            never retried: the job becomes a rejection or a dead letter at once
    │   ├── InvalidId             a tenant/video id that is not a UUID
    │   ├── InvalidEvent          a payload or job event that fails validation
    │   ├── LayoutError           layout.db missing, unreadable, no config row, no OCR image
    │   ├── MissingFramesError    chunks/frames absent from the frame store (lists the indices)
    │   ├── CorruptChunkError     a chunk that does not decode (names its key)
    │   ├── LimitExceeded         frame-count or cost guard (COMPAT.md §6)
    │   ├── VersionNotActive      the cropped-frames version row is not 'active' (frames may be partial)
    │   ├── ModelVersionMismatch  the job's model_version is not the one this worker's predictor serves
    │   └── CheckpointError       wrong architecture, missing keys, truncated file
    ├── TransientError            retried with backoff: network, S3 5xx, runner failures
    │   ├── ShardFailed           one or more shards failed in a runner call
    │   ├── RegistryUnavailable   the registry database cannot answer now (connection closed or refused,
    │   │                         server restarting or shutting down, read-only after a failover, pool timeout)
    │   └── StoreUnavailable      the object store cannot answer: endpoint unreachable, 5xx after retries
    │       └── StoreMisconfigured    the bucket does not exist or the credentials are refused: retrying
    │                                 cannot help until the setting is fixed, but a job is retried (not
    │                                 dead-lettered as bad input) so it succeeds once the worker is fixed
    ├── ConfigError               a missing or invalid setting (also a ValueError); names the BOUNDARIES_* variable
    └── RegistryError             any other error of a registry statement (a bug in our SQL or data):
                                  neither retried at once nor permanent; the task's retry budget decides

Errors of lower layers are mapped once, where the adapter calls the library: psycopg in
``boundaries/registry/db.py``, botocore in ``boundaries/storage/s3.py``.

Messages name the field, the bad value and the next step.
"""

from __future__ import annotations


class BoundariesError(Exception):
    """Base of every error raised by this project."""


class PermanentError(BoundariesError):
    """Retrying cannot help; the input must change first."""

    error_type = "permanent"


class TransientError(BoundariesError):
    """May succeed if tried again (network, object store 5xx, GPU runner)."""

    error_type = "transient"


class InvalidId(PermanentError, ValueError):
    error_type = "invalid_id"


class InvalidEvent(PermanentError, ValueError):
    error_type = "invalid_event"


class LayoutError(PermanentError):
    error_type = "layout_error"


class MissingFramesError(PermanentError):
    """Frames absent from the store. ``missing`` holds the missing frame indices (sorted)."""

    error_type = "missing_frames"

    def __init__(self, message: str, missing: list[int] | None = None):
        super().__init__(message)
        self.missing = sorted(missing or [])

    def __reduce__(self):  # survive pickling across process pools and Modal with all fields
        return (type(self), (self.args[0], self.missing))


class CorruptChunkError(PermanentError):
    error_type = "corrupt_chunk"

    def __init__(self, message: str, key: str = ""):
        super().__init__(message)
        self.key = key

    def __reduce__(self):
        return (type(self), (self.args[0], self.key))


class LimitExceeded(PermanentError):
    """``rejection_type`` is one of COMPAT.md §6's rejection types."""

    error_type = "limit_exceeded"

    def __init__(self, message: str, rejection_type: str, frame_count: int | None = None,
                 estimated_cost_usd: float | None = None):
        super().__init__(message)
        self.rejection_type = rejection_type
        self.frame_count = frame_count
        self.estimated_cost_usd = estimated_cost_usd

    def __reduce__(self):
        return (type(self), (self.args[0], self.rejection_type, self.frame_count, self.estimated_cost_usd))


class VersionNotActive(PermanentError):
    """The registry row of the job's cropped-frames version exists but its status is not ``active``
    (e.g. ``processing``: chunks are still being written). The job is released, not failed, so the
    reconciler enqueues it again once the version is active (COMPAT.md §6)."""

    error_type = "version_not_active"


class ModelVersionMismatch(PermanentError):
    """The job asks for a model_version that this worker's predictor does not serve (a worker configured
    for another checkpoint, or a replayed job of a retired model). Retrying on the same worker cannot help:
    the job is dead-lettered at claim; run a worker for that model_version, then replay it."""

    error_type = "model_version_mismatch"


class CheckpointError(PermanentError):
    error_type = "checkpoint_error"


class RecordNotFound(PermanentError, LookupError):
    """No registry row (job, run) with the id an operator gave; the CLI exits 65 (data error)."""

    error_type = "not_found"


class ObjectNotFound(PermanentError, KeyError):
    """A key that is not in the object store."""

    error_type = "object_not_found"

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ShardFailed(TransientError):
    """``failed`` maps shard ids to the error text of each failed shard."""

    error_type = "shard_failed"

    def __init__(self, message: str, failed: dict[str, str] | None = None):
        super().__init__(message)
        self.failed = dict(failed or {})

    def __reduce__(self):
        return (type(self), (self.args[0], self.failed))


class RegistryError(BoundariesError):
    """A registry (PostgreSQL) statement failed for a reason other than the connection; the psycopg
    error is the ``__cause__``."""

    error_type = "registry_error"


class RegistryUnavailable(RegistryError, TransientError):
    """The registry database could not answer: connection closed by the server (idle timeout, failover,
    restart: ``AdminShutdown``), refused, timed out, or the server is read-only. Retry with backoff."""

    error_type = "registry_unavailable"


class ConfigError(BoundariesError, ValueError):
    """A setting is missing or invalid; the message names its ``BOUNDARIES_*`` variable and the fix.
    ``setting`` holds that variable's name (or "" when several)."""

    error_type = "config_error"

    def __init__(self, message: str, setting: str = ""):
        super().__init__(message)
        self.setting = setting

    def __reduce__(self):
        return (type(self), (self.args[0], self.setting))


class StoreUnavailable(TransientError):
    """The object store did not answer (endpoint unreachable or refusing connections, 5xx or throttling
    after botocore's retries). ``setting`` names the setting to check (``BOUNDARIES_S3_ENDPOINT_URL``)."""

    error_type = "store_unavailable"

    def __init__(self, message: str, setting: str = ""):
        super().__init__(message)
        self.setting = setting

    def __reduce__(self):
        return (type(self), (self.args[0], self.setting))


class StoreMisconfigured(StoreUnavailable):
    """The bucket does not exist (``BOUNDARIES_S3_BUCKET``) or the store refuses the credentials
    (``BOUNDARIES_S3_ACCESS_KEY_ID`` / ``BOUNDARIES_S3_SECRET_ACCESS_KEY``): a configuration error at start-up
    (``boundaries doctor``, worker start, CLI exit 78). During a job it stays a TransientError: the job is
    retried with backoff and, when its attempts run out, dead-lettered as ``store_misconfigured`` (replay it
    once the setting is fixed) — never as a layout or frames error of the video."""

    error_type = "store_misconfigured"
