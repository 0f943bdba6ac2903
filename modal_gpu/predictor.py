"""The predictor interface every model behind the shard function implements.

Implementations: the classical detector (:mod:`modal_gpu.detector`, numpy only, no checkpoint) and
the users' learned model (:mod:`modal_gpu.model_predictor`, torch). :func:`load_predictor` picks one.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from boundaries.layout_config import LayoutConfig
from modal_gpu.inference_options import InferenceOptions


class PairPredictor(Protocol):
    model_version: str
    """Identity of the model, part of the job's idempotency key (e.g. ``mrn0fkfd_a4b1a61c``)."""

    def predict(self, frames: np.ndarray, layout: LayoutConfig) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities for every consecutive pair of ``frames``.

        Args:
            frames: ``uint8 (N, H, W, 3)`` RGB crops of N consecutive frame indices, N >= 2.
            layout: the video's layout (anchor, crop geometry, OCR prior image).

        Returns:
            ``(forward, backward)``, each ``float32 (N-1, 5)``, rows summing to 1, columns in
            :data:`boundaries.labels.LABELS` order. Row k of ``forward`` is the pair
            (frame k, frame k+1); row k of ``backward`` is (frame k+1, frame k).
        """
        ...


class StagedPairPredictor(PairPredictor, Protocol):
    """A predictor whose work splits in two stages that :func:`modal_gpu.shard.predict_range` overlaps:
    ``stage(frames)`` (prefetch thread: e.g. pinned host-to-device copy) and
    ``predict_staged(staged, layout)`` (same result as ``predict``). ``pairs_per_step``: pairs per
    model step (the shard path's decode window is at least this)."""

    pairs_per_step: int

    def stage(self, frames: np.ndarray) -> object: ...

    def predict_staged(self, staged: object, layout: LayoutConfig) -> tuple[np.ndarray, np.ndarray]: ...


def load_predictor(checkpoint_path: str | None, *, device: str | None = None, batch_size: int = 64,
                   model_version: str | None = None, options: InferenceOptions | None = None) -> PairPredictor:
    """The classical detector when ``checkpoint_path`` is None, else the users' model (imports torch)
    run as ``options`` say (default :class:`InferenceOptions`: auto precision, channels_last)."""
    if checkpoint_path is None:
        from modal_gpu.detector import ClassicalDetector

        return ClassicalDetector()
    from modal_gpu.model_predictor import ModelPredictor

    return ModelPredictor.from_checkpoint(checkpoint_path, device=device, batch_size=batch_size,
                                          model_version=model_version, options=options)
