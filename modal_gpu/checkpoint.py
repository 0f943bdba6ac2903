"""Users' checkpoints (COMPAT.md §4): load, identify, and write them (for tests and benchmarks).

A checkpoint is a ``torch.save`` dict with ``model_state_dict``, ``config`` (``architecture_name``,
``model_config``), ``transform_strategy``, ``ocr_viz_variant``, ``epoch``, ``optimizer_state_dict``,
``scheduler_state_dict``, ``metrics``, ``wandb_run_id``, ``wandb_run_name``.

**Trusted files only**: the dict is unpickled with ``torch.load(weights_only=False)``, which can run
arbitrary code; load only checkpoints the operators put on the model volume themselves.

``model_version`` = ``{wandb_run_id}_{sha256(file)[:8]}`` (e.g. ``mrn0fkfd_a4b1a61c``), as upstream.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import torch

from boundaries.errors import CheckpointError
from modal_gpu.model import ARCHITECTURE_NAME, ChannelFusionLoRA, build_model

log = structlog.get_logger(__name__)

_HASH_CHUNK = 1 << 20
_LOAD_ERRORS = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
                AttributeError, ModuleNotFoundError)


@dataclass(frozen=True)
class CheckpointInfo:
    """What inference needs from a checkpoint besides the weights."""

    path: str
    sha256: str
    model_version: str
    wandb_run_id: str | None
    architecture_name: str
    transform_strategy: str = "mirror_tile"
    ocr_viz_variant: str | None = None
    epoch: int | None = None
    metrics: dict = field(default_factory=dict)


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of the file's bytes (streamed, 1 MiB at a time). Raises CheckpointError if absent."""
    h = hashlib.sha256()
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist (on Modal: a path on the model volume, "
                              "see `boundaries upload-checkpoint`)")
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist (on Modal: a path on the model volume, "
                              "see `boundaries upload-checkpoint`)")
    try:
        # Trusted files only (module docstring): the dict holds non-tensor objects.
        ckpt = torch.load(p, map_location="cpu", weights_only=False, mmap=True)  # noqa: S614
    except _LOAD_ERRORS as e:
        raise CheckpointError(f"checkpoint {str(p)!r} cannot be read ({type(e).__name__}: {e}); "
                              "the file is truncated or not a torch.save file — upload it again") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model_state_dict"), dict):
        got = sorted(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"checkpoint {str(p)!r} has no 'model_state_dict' dict (got {got})")
    return ckpt


def _version(ckpt: dict, path: str | Path, sha256: str) -> str:
    run_id = ckpt.get("wandb_run_id")
    if not run_id or not isinstance(run_id, str):
        raise CheckpointError(f"checkpoint {str(path)!r}: wandb_run_id is {run_id!r}; pass model_version "
                              "explicitly")
    return f"{run_id}_{sha256[:8]}"


def model_version_of(path: str | Path) -> tuple[str, str]:
    """``(model_version, sha256)`` of a checkpoint file, e.g. ``("mrn0fkfd_a4b1a61c", "a4b1a61c…")``.

    Raises:
        CheckpointError: unreadable/truncated file, or no ``wandb_run_id``.
    """
    sha = sha256_of(path)
    return _version(_read(path), path, sha), sha


def load_checkpoint(path: str | Path, *, model_version: str | None = None) -> tuple[ChannelFusionLoRA, CheckpointInfo]:
    """The model (eval mode, CPU, float32) with the checkpoint's weights loaded ``strict=True``, and its info.

    ``model_version``: overrides ``{wandb_run_id}_{sha256[:8]}`` (e.g. the volume file name).

    Raises:
        CheckpointError: missing/truncated file, wrong ``architecture_name``, missing or unexpected
            state-dict keys, or tensor shapes that do not match the architecture.
    """
    sha = sha256_of(path)
    ckpt = _read(path)
    config = ckpt.get("config") or {}
    arch = config.get("architecture_name", ARCHITECTURE_NAME) if isinstance(config, dict) else None
    if arch != ARCHITECTURE_NAME:
        raise CheckpointError(f"checkpoint {str(path)!r}: config.architecture_name is {arch!r}, "
                              f"expected {ARCHITECTURE_NAME!r}")
    model = build_model(config.get("model_config"))
    try:
        model.load_state_dict(ckpt["model_state_dict"], strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[:4]
        raise CheckpointError(f"checkpoint {str(path)!r}: state dict does not match {ARCHITECTURE_NAME} "
                              f"(strict=True): {' '.join(first)[:600]}") from e
    version = model_version or _version(ckpt, path, sha)
    computed = f"{ckpt.get('wandb_run_id')}_{sha[:8]}"
    if model_version and model_version != computed:
        log.warning("checkpoint.version_differs", given=model_version, computed=computed, path=str(path))
    info = CheckpointInfo(path=str(path), sha256=sha, model_version=version,
                          wandb_run_id=ckpt.get("wandb_run_id"), architecture_name=arch,
                          transform_strategy=ckpt.get("transform_strategy") or "mirror_tile",
                          ocr_viz_variant=ckpt.get("ocr_viz_variant"), epoch=ckpt.get("epoch"),
                          metrics=dict(ckpt.get("metrics") or {}))
    log.info("checkpoint.loaded", model_version=version, sha256=sha, path=str(path))
    return model, info


def save_checkpoint(model: ChannelFusionLoRA, path: str | Path, *, wandb_run_id: str,
                    wandb_run_name: str | None = None, epoch: int = 0, metrics: dict | None = None,
                    transform_strategy: str = "mirror_tile", ocr_viz_variant: str = "boxes",
                    model_config: dict | None = None) -> tuple[str, str]:
    """Write ``model`` in the users' checkpoint format; returns ``(model_version, sha256)``.

    Optimizer/scheduler states are written empty (inference never reads them).
    """
    torch.save({
        "model_state_dict": model.state_dict(),
        "config": {"architecture_name": ARCHITECTURE_NAME, "model_config": model_config or {"pretrained": True}},
        "transform_strategy": transform_strategy,
        "ocr_viz_variant": ocr_viz_variant,
        "epoch": epoch,
        "optimizer_state_dict": {},
        "scheduler_state_dict": {},
        "metrics": metrics or {},
        "wandb_run_id": wandb_run_id,
        "wandb_run_name": wandb_run_name or wandb_run_id,
    }, path)
    sha = sha256_of(path)
    return f"{wandb_run_id}_{sha[:8]}", sha
