"""Which model_version a job is for — part of its idempotency key (COMPAT.md §4, §6).

The producer must know it without importing torch: it is either configured
(``BOUNDARIES_MODEL_VERSION``, e.g. ``mrn0fkfd_a4b1a61c`` as upstream names checkpoints) or, with no
checkpoint configured, the built-in classical detector's version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.settings import Settings

CLASSICAL_MODEL_VERSION = "classical-v3"
"""model_version of the built-in classical detector (modal_gpu/detector.py); bump when it changes."""


def resolve_model_version(settings: Settings) -> str:
    """``settings.model_version`` if set; else the classical detector's when no checkpoint is configured.

    Raises:
        ValueError: a checkpoint is configured but its model_version is not: the producer cannot
            hash and unpickle a 138 MB checkpoint; set BOUNDARIES_MODEL_VERSION (the CLI derives it
            with ``boundaries model-version PATH``).
    """
    if settings.model_version:
        return settings.model_version
    if settings.checkpoint_path is None:
        return CLASSICAL_MODEL_VERSION
    raise ValueError(
        f"checkpoint_path is set ({settings.checkpoint_path}) but model_version is not; set "
        "BOUNDARIES_MODEL_VERSION to the checkpoint's {wandb_run_id}_{sha256[:8]}"
    )
