"""Local-directory object store (embedded default and tests)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from boundaries.errors import ObjectNotFound


class LocalStore:
    """Objects are files under ``root``; a key's ``/`` are directories."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or "\\" in key:
            raise ValueError(f"object key must be a relative path, got {key!r}")
        p = (self.root / key).resolve()
        if p != self.root and self.root not in p.parents:
            raise ValueError(f"object key escapes the store root: {key!r}")
        return p

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise ObjectNotFound(f"no object at key {key!r} in {self.root}") from e

    def put_bytes(self, key: str, data: bytes) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as e:
            raise ObjectNotFound(f"no object at key {key!r} in {self.root}") from e

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Keys starting with ``prefix`` (S3 semantics: a plain string prefix), sorted. Only the directory
        that the prefix's complete segments name is walked, not the whole store: a job lists its own
        video's chunks whatever the number of videos beside it."""
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        try:
            start = self._path(base) if base else self.root
        except ValueError:
            return
        keys = []
        for dirpath, _dirs, files in os.walk(start):
            rel = os.path.relpath(dirpath, self.root)
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        yield from sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def describe(self) -> dict:
        return {"backend": "local", "root": str(self.root)}
