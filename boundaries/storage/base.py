"""The object-store port: a handful of whole-object operations on string keys.

Implementations: :mod:`boundaries.storage.s3` (Wasabi/S3 via boto3) and
:mod:`boundaries.storage.local` (a directory). Both pass ``tests/unit/test_storage_contract.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class ObjectStore(Protocol):
    def get_bytes(self, key: str) -> bytes:
        """Whole object. Raises ObjectNotFound (boundaries.errors) when absent."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write atomically: readers see the old object, the new one, or none, never a part."""

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int:
        """Size in bytes. Raises ObjectNotFound when absent."""

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix``, in lexicographic order, paginating as needed."""

    def delete(self, key: str) -> None:
        """Delete if present; deleting a missing key is not an error."""

    def describe(self) -> dict:
        """A JSON-safe description (no secrets) from which :func:`open_store` rebuilds this store
        in another process (local runner children, Modal containers)."""
