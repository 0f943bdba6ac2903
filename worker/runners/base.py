"""The GPU-runner port: run many shard requests concurrently, one result per request, in order.

Implementations: :mod:`worker.runners.local` (process pool, the same shard function) and
:mod:`worker.runners.modal` (Modal GPU containers). Both pass tests/unit/test_runner_contract.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from boundaries.shards import ShardRequest, ShardSummary


@dataclass(frozen=True)
class ShardError:
    """A shard that failed. ``permanent``: retrying cannot help (missing frames, corrupt chunk…)."""

    shard_id: str
    error_type: str
    message: str
    permanent: bool


class Runner(Protocol):
    def map(self, requests: list[ShardRequest]) -> list[ShardSummary | ShardError]:
        """Run every request; never raises for a shard's own failure (it becomes a ShardError).
        An empty list returns an empty list without contacting any backend."""
        ...

    def close(self) -> None: ...


def shard_error_from(shard_id: str, exc: BaseException) -> ShardError:
    from boundaries.errors import PermanentError

    return ShardError(shard_id=shard_id, error_type=getattr(exc, "error_type", type(exc).__name__),
                      message=f"{type(exc).__name__}: {exc}"[:2000], permanent=isinstance(exc, PermanentError))
