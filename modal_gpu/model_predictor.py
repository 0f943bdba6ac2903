"""The users' model behind the :class:`modal_gpu.predictor.PairPredictor` interface.

Per call: every frame is preprocessed once on the model's device (:mod:`modal_gpu.preprocess`), the
OCR image once per layout (cached), and each step runs the forward (k, k+1) and backward (k+1, k)
directions of its pairs as one model batch, written straight into reused channels_last input buffers.
How it runs is :class:`modal_gpu.inference_options.InferenceOptions`: autocast dtype (``auto``: fp16
on CUDA, bf16 on CPUs with AMX/AVX512-BF16, else fp32), channels_last, and on CUDA batches of
``cuda_batch_size`` samples, cudnn autotuning, optional ``torch.compile`` or a CUDA graph.

Two stages, so a caller can overlap them (:func:`modal_gpu.shard.predict_range` does): :meth:`stage`
(thread-safe w.r.t. :meth:`predict_staged`; CUDA: copy into one of three pinned host buffers and
start the host-to-device copy on a side stream) and :meth:`predict_staged` (preprocess on the device,
model, one device-to-host copy of the probabilities per call).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
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
from modal_gpu.inference_options import InferenceOptions, cpu_has_native_bf16
from modal_gpu.model import INPUT_HEIGHT, INPUT_WIDTH, ChannelFusionLoRA
from modal_gpu.preprocess import FramePreprocessor
from modal_gpu.spatial import spatial_features

log = structlog.get_logger(__name__)

_OCR_CACHE_SIZE = 8
_PINNED_BUFFERS = 3
"""Pinned host staging buffers on CUDA: one being filled, one being copied, one held by the model."""
_AMP = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``precision`` on ``device`` (None = plain fp32); see module docstring.

    Raises:
        ValueError: unknown ``precision``.
    """
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if precision not in _AMP:
        raise ValueError(f"precision must be one of auto, fp32, fp16, bf16, got {precision!r}")
    return _AMP[precision]


def check_frames(frames) -> None:
    """Raises ValueError unless ``frames`` is ``uint8 (N>=2, H, W, 3)`` (numpy or torch)."""
    ok = isinstance(frames, np.ndarray | torch.Tensor) and frames.ndim == 4 and frames.shape[-1] == 3 \
        and frames.shape[0] >= 2 and frames.dtype in (np.uint8, torch.uint8)
    if not ok:
        got = (frames.dtype, tuple(frames.shape)) if isinstance(frames, np.ndarray | torch.Tensor) \
            else type(frames).__name__
        raise ValueError(f"frames: expected uint8 (N>=2, H, W, 3), got {got}")


@dataclass
class StagedFrames:
    """Frames handed from :meth:`ModelPredictor.stage` to :meth:`ModelPredictor.predict_staged`:
    ``frames`` is the ``uint8 (N, H, W, 3)`` numpy array (CPU) or device tensor (CUDA, being copied
    until ``ready`` fires on the copy stream)."""

    frames: np.ndarray | torch.Tensor
    ready: torch.cuda.Event | None = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])


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

    ``batch_size``: model samples per forward pass on CPU (the request's, COMPAT.md §8); on CUDA
    ``max(batch_size, options.cuda_batch_size)``. Each step covers half as many pairs, both directions.
    ``amp_dtype`` overrides ``options.precision`` (None there means: from the options).
    """

    def __init__(self, model: ChannelFusionLoRA, *, model_version: str, sha256: str = "",
                 device: str | torch.device | None = None, batch_size: int = 64,
                 options: InferenceOptions | None = None, amp_dtype: torch.dtype | None = None):
        self.options = options or InferenceOptions()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model_version = model_version
        self.sha256 = sha256
        self.cuda = self.device.type == "cuda"
        samples = max(batch_size, self.options.cuda_batch_size) if self.cuda else batch_size
        self.pairs_per_step = max(1, samples // 2)
        self.amp_dtype = amp_dtype if amp_dtype is not None else resolve_precision(self.options.precision,
                                                                                   self.device)
        self.memory_format = torch.channels_last if self.options.channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device).to(memory_format=self.memory_format)
        self._forward = self.model
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            if self.options.compile:
                self._forward = torch.compile(self.model, dynamic=False)
        elif self.options.compile or self.options.cuda_graphs:
            log.info("model.cuda_only_options_ignored", device=str(self.device))
        self._graph: _GraphedForward | None = None
        self.preprocess = FramePreprocessor(self.device)
        self._ocr: OrderedDict[tuple[bytes, str], torch.Tensor] = OrderedDict()
        self._inputs: dict[str, torch.Tensor] = {}
        self._ocr_in_buffer: torch.Tensor | None = None
        self._stage_lock = threading.Lock()
        self._pinned: list[torch.Tensor] = []
        self._pinned_free: list[torch.cuda.Event | None] = [None] * _PINNED_BUFFERS
        self._next_pinned = 0
        self._copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        log.info("model.ready", device=str(self.device), amp=str(self.amp_dtype), pairs_per_step=self.pairs_per_step,
                 channels_last=self.options.channels_last, compile=self.options.compile and self.cuda,
                 cuda_graphs=self.options.cuda_graphs and self.cuda)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | None = None, batch_size: int = 64,
                        model_version: str | None = None, fuse: bool = True,
                        options: InferenceOptions | None = None) -> ModelPredictor:
        """Load a users' checkpoint (trusted files only, :mod:`modal_gpu.checkpoint`); fold LoRA/BN if ``fuse``.

        Raises:
            CheckpointError: unreadable file, wrong architecture, missing/unexpected keys.
        """
        model, info = load_checkpoint(path, model_version=model_version)
        if fuse:
            model = fuse_model(model)
        return cls(model, model_version=info.model_version, sha256=info.sha256, device=device,
                   batch_size=batch_size, options=options)

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

    def _buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A reused model-input tensor in the model's memory format (full step size, sliced per call)."""
        buf = self._inputs.get(name)
        if buf is None or tuple(buf.shape) != shape:
            buf = self._inputs[name] = torch.empty(shape, device=self.device).contiguous(
                memory_format=self.memory_format if len(shape) == 4 else torch.contiguous_format)
        return buf

    def _step_inputs(self, ocr: torch.Tensor, x: torch.Tensor, spatial: torch.Tensor) -> list[torch.Tensor]:
        """Model inputs for the pairs of ``x (m + 1, 3, 48, 480)``: rows ``[:m]`` forward (k, k+1), rows
        ``[m:]`` backward (k+1, k); each frame copied once per direction into the reused buffers."""
        m = x.shape[0] - 1
        full = 2 * self.pairs_per_step
        ocr_b, f1, f2 = (self._buffer(n, (full, 3, INPUT_HEIGHT, INPUT_WIDTH)) for n in ("ocr", "f1", "f2"))
        sp = self._buffer("spatial", (full, spatial.shape[1]))
        if self._ocr_in_buffer is not ocr:  # the OCR image changes per layout only
            ocr_b.copy_(ocr.expand(full, -1, -1, -1))
            self._ocr_in_buffer = ocr
        sp.copy_(spatial.expand(full, -1))
        a, b = x[:-1], x[1:]
        f1[:m].copy_(a)
        f1[m:2 * m].copy_(b)
        f2[:m].copy_(b)
        f2[m:2 * m].copy_(a)
        return [ocr_b[:2 * m], f1[:2 * m], f2[:2 * m], sp[:2 * m]]

    def _logits(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        full = inputs[1].shape[0] == 2 * self.pairs_per_step
        if full and self.cuda and self.options.cuda_graphs:
            if self._graph is None:
                self._graph = _GraphedForward(self.model, [self._inputs[n] for n in ("ocr", "f1", "f2", "spatial")],
                                              self.amp_dtype)
            return self._graph.replay()
        forward = self._forward if full else self.model  # compiled for the full batch size only
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            return forward(*inputs).float()

    def stage(self, frames: np.ndarray) -> StagedFrames:
        """First stage (any thread): on CUDA copy ``frames`` into a pinned buffer and start its
        host-to-device copy on the copy stream; on CPU only validate. Raises ValueError as :meth:`predict`."""
        check_frames(frames)
        if not self.cuda:
            return StagedFrames(frames)
        with self._stage_lock:
            i = self._next_pinned
            self._next_pinned = (i + 1) % _PINNED_BUFFERS
            if self._pinned_free[i] is not None:
                self._pinned_free[i].synchronize()  # its previous host-to-device copy has finished
            if len(self._pinned) <= i or self._pinned[i].numel() < frames.size:
                buf = torch.empty(frames.size, dtype=torch.uint8).pin_memory()
                self._pinned[i:i + 1] = [buf]
            host = self._pinned[i][:frames.size].view(frames.shape)
            host.numpy()[...] = frames
            with torch.cuda.stream(self._copy_stream):
                dev = host.to(self.device, non_blocking=True)
                ready = torch.cuda.Event()
                ready.record(self._copy_stream)
            self._pinned_free[i] = ready
        return StagedFrames(dev, ready)

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
        return self.predict_staged(self.stage(frames), layout)

    def predict_staged(self, staged: StagedFrames, layout: LayoutConfig) -> tuple[np.ndarray, np.ndarray]:
        """Second stage of :meth:`predict` for frames from :meth:`stage` (same returns and errors)."""
        n_pairs = len(staged) - 1
        with torch.inference_mode():
            ocr = self.ocr_tensor(layout)
            spatial = torch.as_tensor(spatial_features(layout), device=self.device)[None]
            if self.cuda:
                return self._predict_device(staged, ocr, spatial, layout.anchor_type, n_pairs)
            return self._predict_cpu(staged.frames, ocr, spatial, layout.anchor_type, n_pairs)

    def _predict_device(self, staged: StagedFrames, ocr, spatial, anchor: str, n_pairs: int):
        """CUDA: all frames preprocessed in one call, probabilities gathered on the device, one copy back."""
        stream = torch.cuda.current_stream(self.device)
        stream.wait_event(staged.ready)
        staged.frames.record_stream(stream)  # allocated on the copy stream, used on this one
        x = self.preprocess(staged.frames, anchor)
        probs = torch.empty((2, n_pairs, NUM_LABELS), device=self.device)
        for p0 in range(0, n_pairs, self.pairs_per_step):
            p1 = min(p0 + self.pairs_per_step, n_pairs)
            m = p1 - p0
            logits = self._logits(self._step_inputs(ocr, x[p0:p1 + 1], spatial))
            probs[:, p0:p1] = torch.softmax(logits, dim=1).view(2, m, NUM_LABELS)
        out = probs.cpu().numpy()
        return out[0], out[1]

    def _predict_cpu(self, frames: np.ndarray, ocr, spatial, anchor: str, n_pairs: int):
        """CPU: preprocess step by step (cache-sized), row 0 of ``buf`` carrying the previous step's
        last frame so every frame is preprocessed exactly once."""
        fwd = np.empty((n_pairs, NUM_LABELS), dtype=np.float32)
        bwd = np.empty((n_pairs, NUM_LABELS), dtype=np.float32)
        buf = torch.empty((self.pairs_per_step + 1, 3, INPUT_HEIGHT, INPUT_WIDTH), device=self.device)
        last = buf[0]
        for p0 in range(0, n_pairs, self.pairs_per_step):
            p1 = min(p0 + self.pairs_per_step, n_pairs)
            first = 0 if p0 == 0 else 1
            if first:
                buf[0] = last
            self.preprocess(np.ascontiguousarray(frames[p0 + first:p1 + 1]), anchor, out=buf[first:p1 - p0 + 1])
            last = buf[p1 - p0].clone()
            logits = self._logits(self._step_inputs(ocr, buf[:p1 - p0 + 1], spatial))
            probs = torch.softmax(logits, dim=1).numpy()
            m = p1 - p0
            fwd[p0:p1], bwd[p0:p1] = probs[:m], probs[m:]
        return fwd, bwd


class _GraphedForward:
    """The model's forward pass over fixed input buffers, captured once in a CUDA graph and replayed
    (no per-kernel launch cost). ``replay()`` returns the static ``float32 (B, 5)`` logits, valid until
    the next replay (stream order makes the caller's softmax read them first)."""

    def __init__(self, model, inputs: list[torch.Tensor], amp_dtype: torch.dtype | None):
        self.inputs = inputs
        side = torch.cuda.Stream(inputs[0].device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up: cudnn autotuning and allocator pools settle before capture
                self._run(model, amp_dtype)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self._run(model, amp_dtype)

    def _run(self, model, amp_dtype):
        with torch.autocast("cuda", dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None,
                            cache_enabled=False):
            return model(*self.inputs).float()

    def replay(self) -> torch.Tensor:
        self.graph.replay()
        return self.out
