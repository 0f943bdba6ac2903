"""``boundaries upload-checkpoint PATH [--force]``: put a user's checkpoint on the Modal volume.

The file lands on volume ``boundary-models`` as ``/checkpoints/{model_version}.pt`` (mounted at
``/models`` in the containers, COMPAT.md §8), where ``model_version`` = ``{wandb_run_id}_{sha256[:8]}``
(:func:`modal_gpu.checkpoint.model_version_of`, which imports torch — only when this command runs).
An existing file of that name is never overwritten without ``force`` (``--force``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

VOLUME_NAME = "boundary-models"
CHECKPOINT_DIR = "/checkpoints"


def remote_path_for(model_version: str) -> str:
    return f"{CHECKPOINT_DIR}/{model_version}.pt"


def _existing(volume: Any, remote: str) -> bool:
    try:
        entries = volume.listdir(CHECKPOINT_DIR)
    except Exception as e:  # noqa: BLE001 — Modal raises NotFoundError for a missing directory
        if type(e).__name__ in ("NotFoundError", "FileNotFoundError"):
            return False
        raise
    names = {str(getattr(e, "path", e)).lstrip("/") for e in entries}
    return remote.lstrip("/") in names or remote.rsplit("/", 1)[-1] in names


def upload_checkpoint(path: str | Path, *, force: bool = False, volume: Any = None) -> str:
    """Upload ``path`` to the model volume; returns its path on the volume (``/checkpoints/{model_version}.pt``).

    Args:
        volume: a ``modal.Volume`` (default ``modal.Volume.from_name("boundary-models", create_if_missing=True)``).

    Raises:
        CheckpointError: ``path`` is missing, unreadable or has no ``wandb_run_id``.
        FileExistsError: the volume already holds that model_version and ``force`` is False.
    """
    from modal_gpu.checkpoint import model_version_of  # imports torch

    path = Path(path)
    model_version, sha256 = model_version_of(path)
    remote = remote_path_for(model_version)
    if volume is None:
        import modal

        volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
    if not force and _existing(volume, remote):
        raise FileExistsError(f"volume {VOLUME_NAME!r} already has {remote} (model_version {model_version}); "
                              "pass --force to overwrite it")
    with volume.batch_upload(force=force) as batch:
        batch.put_file(str(path), remote)
    log.info("checkpoint.uploaded", model_version=model_version, sha256=sha256, remote_path=remote,
             size_bytes=path.stat().st_size, forced=force)
    return remote


def cmd_upload(args: argparse.Namespace) -> int:
    try:
        remote = upload_checkpoint(args.checkpoint, force=args.force)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"volume": VOLUME_NAME, "path": remote,
                      "container_path": f"/models{remote}"}))
    return 0


def add_upload_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``upload-checkpoint`` on the CLI's subparsers (boundaries_cli/main.py build_parser)."""
    p = sub.add_parser("upload-checkpoint",
                       help=f"put a checkpoint on Modal volume {VOLUME_NAME!r} as /checkpoints/{{model_version}}.pt")
    p.add_argument("checkpoint", help="a user's channel_fusion_lora_spatial checkpoint (.pt)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file of the same model_version")
    p.set_defaults(func=cmd_upload)
    return p
