"""Build an object store from settings, or from a ``describe()`` dict in another process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from boundaries.storage.base import ObjectStore
from boundaries.storage.local import LocalStore

if TYPE_CHECKING:
    from config.settings import Settings


def store_from_settings(settings: Settings) -> ObjectStore:
    if settings.storage_backend == "local":
        return LocalStore(settings.store_root())
    from boundaries.storage.s3 import S3Store

    return S3Store.from_settings(settings)


def open_store(description: dict) -> ObjectStore:
    """Inverse of ``store.describe()``. S3 credentials come from the environment
    (``BOUNDARIES_S3_ACCESS_KEY_ID``/``..._SECRET_ACCESS_KEY``, ``WASABI_ACCESS_KEY``/``WASABI_SECRET_KEY``
    in Modal's ``wasabi-credentials`` secret, or boto3's default chain)."""
    backend = description.get("backend")
    if backend == "local":
        return LocalStore(description["root"])
    if backend == "s3":
        from boundaries.storage.s3 import S3Store

        return S3Store.from_description(description)
    raise ValueError(f"store description has unknown backend {backend!r}")
