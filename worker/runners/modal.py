"""Modal runner: one shard = one call of ``BoundaryInference.run_boundary_inference_batch`` (modal_gpu/app.py).

The upstream GPU function ``run_boundary_inference_batch`` (COMPAT.md §8) is a *method* of the class
``BoundaryInference`` here (``@app.cls`` + ``@modal.enter`` loads the model once per container), so the
runner looks up ``modal.Cls.from_name(app_name, "BoundaryInference")`` and calls the method on an
instance parametrized by the model (``model_version``: empty = classical detector, else the checkpoint on
the ``boundary-models`` volume; ``batch_size``).

Calls: every request is materialized to a JSON dict first, then ``.spawn()``-ed (Modal runs up to
``max_containers`` at once and retries failed inputs per ``modal.Retries``); results are collected in
request order with ``FunctionCall.get(timeout=…)`` against one job deadline (``modal_call_deadline_s``);
calls still running at the deadline are cancelled and become transient ShardErrors. Empty request
lists never contact Modal. Nothing here imports torch.

Error mapping: a remote exception whose type (or any base class) is named like a boundaries
``PermanentError`` (``MissingFramesError``, ``CorruptChunkError``, ``CheckpointError``, …) becomes a
permanent ShardError; anything else (Modal errors, timeouts, S3 5xx, unpicklable remote errors) is
transient.

Shards run remotely, so the store must be remote too: a local-directory store raises
:class:`RunnerConfigError` before anything is sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from boundaries import errors as _errors
from boundaries.errors import PermanentError
from boundaries.shards import ShardRequest, ShardSummary
from worker.runners.base import ShardError

log = structlog.get_logger(__name__)

CLASS_NAME = "BoundaryInference"
METHOD_NAME = "run_boundary_inference_batch"

PERMANENT_ERROR_NAMES = frozenset(
    name for name, obj in vars(_errors).items()
    if isinstance(obj, type) and issubclass(obj, PermanentError)
)
"""Type names of every boundaries PermanentError subclass (matched by name: the remote side may raise a
class that does not unpickle here)."""


class RunnerConfigError(PermanentError, ValueError):
    """The runner cannot work with this configuration (e.g. a local-directory object store)."""

    error_type = "runner_config"


def is_permanent(exc: BaseException) -> bool:
    """True when ``exc`` (or one of its base classes) is named like a boundaries PermanentError."""
    return any(c.__name__ in PERMANENT_ERROR_NAMES for c in type(exc).__mro__)


def error_from_remote(shard_id: str, exc: BaseException) -> ShardError:
    return ShardError(shard_id=shard_id, error_type=str(getattr(exc, "error_type", type(exc).__name__)),
                      message=f"{type(exc).__name__}: {exc}"[:2000], permanent=is_permanent(exc))


def _require_remote_store(description: dict) -> None:
    if description.get("backend") == "local":
        raise RunnerConfigError(
            f"the Modal runner needs an object store Modal containers can reach, got a local-directory store "
            f"({description.get('root')!r}); set BOUNDARIES_STORAGE_BACKEND=s3 or BOUNDARIES_RUNNER=local")


class ModalRunner:
    """Fan shards out to the deployed Modal app.

    Args:
        cls_lookup: returns the deployed class handle; default ``modal.Cls.from_name(app_name, CLASS_NAME)``
            (called lazily, once, on the first non-empty ``map``).
        deadline_s: seconds one ``map`` call may take in all before unfinished shards are cancelled.
    """

    def __init__(self, app_name: str, *, deadline_s: float = 3600.0,
                 cls_lookup: Callable[[], Any] | None = None):
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0 seconds, got {deadline_s}")
        self.app_name = app_name
        self.deadline_s = deadline_s
        self._cls_lookup = cls_lookup or self._from_name
        self._cls: Any = None

    @classmethod
    def from_settings(cls, settings) -> ModalRunner:
        """Raises RunnerConfigError when ``settings.storage_backend`` is ``local``."""
        if settings.storage_backend == "local":
            _require_remote_store({"backend": "local", "root": str(settings.store_root())})
        return cls(settings.modal_app_name, deadline_s=settings.modal_call_deadline_s)

    def _from_name(self) -> Any:
        import modal

        return modal.Cls.from_name(self.app_name, CLASS_NAME)

    def _method(self, req: ShardRequest) -> Any:
        if self._cls is None:
            self._cls = self._cls_lookup()
        model_version = req.model_version if req.checkpoint_path else ""
        return getattr(self._cls(model_version=model_version, batch_size=req.batch_size), METHOD_NAME)

    def map(self, requests: list[ShardRequest]) -> list[ShardSummary | ShardError]:
        """One result per request, in order; a shard's failure is a ShardError, never an exception.

        Raises:
            RunnerConfigError: a request's store is a local directory (nothing is sent).
        """
        requests = list(requests)
        if not requests:
            return []
        for req in requests:
            _require_remote_store(req.store)
        payloads = [r.model_dump(mode="json") for r in requests]  # materialized before any call
        t0 = time.monotonic()
        deadline = t0 + self.deadline_s
        calls: list[Any] = []
        results: list[ShardSummary | ShardError | None] = [None] * len(requests)
        for i, (req, payload) in enumerate(zip(requests, payloads, strict=True)):
            try:
                calls.append(self._method(req).spawn(payload))
            except Exception as e:  # noqa: BLE001 — a failed submission fails this shard only
                calls.append(None)
                results[i] = error_from_remote(req.shard_id, e)
        for i, (req, call) in enumerate(zip(requests, calls, strict=True)):
            if call is None:
                continue
            results[i] = self._collect(req, call, deadline)
        out = [r for r in results if r is not None]
        failed = sum(isinstance(r, ShardError) for r in out)
        log.info("runner.modal.mapped", app=self.app_name, shards=len(out), failed=failed,
                 seconds=round(time.monotonic() - t0, 3))
        return out

    def _collect(self, req: ShardRequest, call: Any, deadline: float) -> ShardSummary | ShardError:
        try:
            result = call.get(timeout=max(0.0, deadline - time.monotonic()))
            if isinstance(result, dict) and "permanent_error" in result:
                pe = result["permanent_error"]
                log.warning("shard.failed", shard_id=req.shard_id, error_type=pe["error_type"], permanent=True)
                return ShardError(req.shard_id, pe["error_type"], pe["message"], permanent=True)
            return ShardSummary.model_validate(result)
        except TimeoutError:  # FunctionCall.get: no output before the deadline
            _cancel(call)
            return ShardError(req.shard_id, "deadline_exceeded",
                              f"shard {req.shard_id} had no result within the {self.deadline_s:.0f} s deadline "
                              "(cancelled)", permanent=False)
        except Exception as e:  # noqa: BLE001 — the remote error, deserialized by Modal
            err = error_from_remote(req.shard_id, e)
            log.warning("shard.failed", shard_id=req.shard_id, error_type=err.error_type, permanent=err.permanent)
            return err

    def close(self) -> None:
        self._cls = None


def _cancel(call: Any) -> None:
    try:
        call.cancel()
    except Exception as e:  # noqa: BLE001 — best effort; the deadline result stands either way
        log.warning("shard.cancel_failed", error=f"{type(e).__name__}: {e}")
