"""The users' model behind the :class:`modal_gpu.predictor.PairPredictor` interface.

Per call: every frame is preprocessed once on the model's device (:mod:`modal_gpu.preprocess`), the
OCR image once per layout (cached), and each step runs the forward (k, k+1) and backward (k+1, k)
directions of its pairs as one model batch. CUDA: fp16 autocast, channels_last, cudnn autotuning;
CPU: float32.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path

import numpy as np
import structlog
import torch
from PIL import Image

from boundaries.errors import LayoutError
from boundaries.labels import NUM_LABELS
from boundaries.layout_config import LayoutConfig
from modal_gpu.checkpoint import load_checkpoint
from modal_gpu.fuse import fuse_model
from modal_gpu.model import INPUT_HEIGHT, INPUT_WIDTH, ChannelFusionLoRA
from modal_gpu.preprocess import FramePreprocessor
from modal_gpu.spatial import spatial_features

log = structlog.get_logger(__name__)

_OCR_CACHE_SIZE = 8


def decode_ocr_image(png: bytes) -> np.ndarray:
    """OCR visualization PNG bytes -> ``uint8 (H, W, 3)`` RGB. Raises :class:`LayoutError` if undecodable."""
    try:
        with Image.open(io.BytesIO(png)) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise LayoutError(f"ocr_visualization_image ({len(png)} bytes) is not a readable image: {e}; "
                          "re-run layout analysis") from e


class ModelPredictor:
    """Pair probabilities from a ``channel_fusion_lora_spatial`` model (see module docstring).

    ``batch_size``: model samples per forward pass; each step covers ``batch_size // 2`` pairs in both
    directions.
    """

    def __init__(self, model: ChannelFusionLoRA, *, model_version: str, sha256: str = "",
                 device: str | torch.device | None = None, batch_size: int = 64,
                 amp_dtype: torch.dtype = torch.float16):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model_version = model_version
        self.sha256 = sha256
        self.pairs_per_step = max(1, batch_size // 2)
        self.cuda = self.device.type == "cuda"
        self.amp_dtype = amp_dtype
        self.model = model.eval().to(self.device)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.preprocess = FramePreprocessor(self.device)
        self._ocr: OrderedDict[tuple[bytes, str], torch.Tensor] = OrderedDict()

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | None = None, batch_size: int = 64,
                        model_version: str | None = None, fuse: bool = True) -> ModelPredictor:
        """Load a users' checkpoint (trusted files only, :mod:`modal_gpu.checkpoint`); fold LoRA/BN if ``fuse``.

        Raises:
            CheckpointError: unreadable file, wrong architecture, missing/unexpected keys.
        """
        model, info = load_checkpoint(path, model_version=model_version)
        if fuse:
            model = fuse_model(model)
        return cls(model, model_version=info.model_version, sha256=info.sha256, device=device,
                   batch_size=batch_size)

    def ocr_tensor(self, layout: LayoutConfig) -> torch.Tensor:
        """``float32 (1, 3, 48, 480)`` preprocessed OCR image of ``layout``, cached per (PNG, anchor)."""
        key = (layout.ocr_visualization_png, layout.anchor_type)
        if key in self._ocr:
            self._ocr.move_to_end(key)
            return self._ocr[key]
        tensor = self.preprocess(decode_ocr_image(layout.ocr_visualization_png)[None], layout.anchor_type)
        self._ocr[key] = tensor
        while len(self._ocr) > _OCR_CACHE_SIZE:
            self._ocr.popitem(last=False)
        return tensor

    def _logits(self, ocr: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor, spatial: torch.Tensor) -> torch.Tensor:
        b = f1.shape[0]
        ocr, spatial = ocr.expand(b, -1, -1, -1), spatial.expand(b, -1)
        if not self.cuda:
            return self.model(ocr, f1, f2, spatial).float()
        cl = torch.channels_last
        with torch.autocast("cuda", dtype=self.amp_dtype):
            return self.model(ocr.contiguous(memory_format=cl), f1.contiguous(memory_format=cl),
                              f2.contiguous(memory_format=cl), spatial).float()

    def predict(self, frames: np.ndarray, layout: LayoutConfig) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`modal_gpu.predictor.PairPredictor.predict`.

        Args:
            frames: ``uint8 (N, H, W, 3)`` RGB crops of N >= 2 consecutive frames.
            layout: anchor, crop geometry and OCR image of the video.

        Returns:
            ``(forward, backward)`` softmax probabilities, each ``float32 (N-1, 5)``.

        Raises:
            ValueError: ``frames`` is not ``uint8 (N, H, W, 3)`` with N >= 2.
            LayoutError: the OCR image does not decode.
        """
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 \
                or frames.shape[-1] != 3 or frames.shape[0] < 2:
            got = (frames.dtype, frames.shape) if isinstance(frames, np.ndarray) else type(frames).__name__
            raise ValueError(f"frames: expected uint8 (N>=2, H, W, 3), got {got}")
        n_pairs = frames.shape[0] - 1
        fwd = np.empty((n_pairs, NUM_LABELS), dtype=np.float32)
        bwd = np.empty((n_pairs, NUM_LABELS), dtype=np.float32)
        with torch.inference_mode():
            ocr = self.ocr_tensor(layout)
            spatial = torch.as_tensor(spatial_features(layout), device=self.device)[None]
            # Frames p0..p1 of each step live in ``buf``; row 0 carries the previous step's last frame,
            # so every frame is preprocessed exactly once.
            buf = torch.empty((self.pairs_per_step + 1, 3, INPUT_HEIGHT, INPUT_WIDTH), device=self.device)
            last = buf[0]
            for p0 in range(0, n_pairs, self.pairs_per_step):
                p1 = min(p0 + self.pairs_per_step, n_pairs)
                first = 0 if p0 == 0 else 1
                if first:
                    buf[0] = last
                self.preprocess(np.ascontiguousarray(frames[p0 + first:p1 + 1]), layout.anchor_type,
                                out=buf[first:p1 - p0 + 1])
                last = buf[p1 - p0].clone()
                x = buf[:p1 - p0 + 1]
                a, b = x[:-1], x[1:]
                logits = self._logits(ocr, torch.cat([a, b]), torch.cat([b, a]), spatial)
                probs = torch.softmax(logits, dim=1).cpu().numpy()
                m = p1 - p0
                fwd[p0:p1], bwd[p0:p1] = probs[:m], probs[m:]
        return fwd, bwd
