"""Fast batched preprocessing on the model's device (COMPAT.md §4), checked against the PIL reference.

Each frame is resized once (both inference directions reuse it) and the OCR image once per video.
The resize reproduces Pillow's LANCZOS exactly: Pillow's own filter coefficients (support 3 scaled by
the downscale factor, normalized, rounded to 22-bit fixed point), horizontal pass first, each pass
rounded and clipped to 0..255 like Pillow's 8-bit image between and after the passes. Both passes are
banded matrix products cut into blocks, and the anchor crop / mirror-tile is folded into the kept
columns plus one gather. With ``float64`` arithmetic the result is bit-identical to Pillow; with the
default ``float32``, sums of 13-14 taps can land on the other side of a .5 rounding boundary, so a
value may differ by 1 grey level (<= 1/255/0.224 = 0.0175 after normalization; see
``tests/unit/test_preprocess.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from modal_gpu.model import INPUT_HEIGHT, INPUT_WIDTH
from modal_gpu.preprocess_reference import IMAGENET_MEAN, IMAGENET_STD, resized_width

PRECISION_BITS = 32 - 8 - 2
"""Pillow's fixed-point precision for 8-bit resampling (``Resample.c``)."""
LANCZOS_SUPPORT = 3.0


def _lanczos(x: np.ndarray) -> np.ndarray:
    # sinc(x) * sinc(x / 3) on [-3, 3), 0 elsewhere; np.sinc is sin(pi x) / (pi x)
    return np.where((x >= -LANCZOS_SUPPORT) & (x < LANCZOS_SUPPORT), np.sinc(x) * np.sinc(x / 3.0), 0.0)


def pil_lanczos_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's LANCZOS resampling of one axis as a dense ``float64 (out_size, in_size)`` matrix.

    Entries are Pillow's 22-bit fixed-point coefficients divided by ``2**22`` (exact in float32 and
    float64). Mirrors ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` of Pillow's ``Resample.c``.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = LANCZOS_SUPPORT * filterscale
    mat = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        k = _lanczos((np.arange(xmin, xmax) - center + 0.5) / filterscale)
        total = k.sum()
        if total != 0.0:
            k = k / total
        fixed = np.where(k < 0, np.trunc(-0.5 + k * (1 << PRECISION_BITS)),
                         np.trunc(0.5 + k * (1 << PRECISION_BITS)))
        mat[xx, xmin:xmax] = fixed / (1 << PRECISION_BITS)
    return mat


def mirror_tile_index(src_width: int, anchor_type: str, width: int = INPUT_WIDTH) -> np.ndarray:
    """``int64 (width,)``: source column of each output column when mirror-tiling ``src_width < width``.

    Same layout as :func:`modal_gpu.preprocess_reference.anchor_resize`: the image at the anchor and
    horizontally flipped copies repeated away from it (``center``: both sides; unknown -> ``center``).
    """
    off = {"left": 0, "right": width - src_width}.get(anchor_type, (width - src_width) // 2)
    c = np.arange(width)
    inside = c - off
    right = src_width - 1 - (c - off - src_width) % src_width
    left = (off - 1 - c) % src_width
    return np.where(c < off, left, np.where(c >= off + src_width, right, inside)).astype(np.int64)


@dataclass(frozen=True)
class _Block:
    out_lo: int
    out_hi: int
    in_lo: int
    in_hi: int
    weight: torch.Tensor  # (out_hi - out_lo, in_hi - in_lo)


def _blocks(mat: np.ndarray, rows_per_block: int, device: torch.device, dtype: torch.dtype) -> list[_Block]:
    blocks = []
    for a in range(0, mat.shape[0], rows_per_block):
        b = min(a + rows_per_block, mat.shape[0])
        nz = np.nonzero(np.any(mat[a:b] != 0, axis=0))[0]
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 1)
        blocks.append(_Block(a, b, lo, hi, torch.as_tensor(mat[a:b, lo:hi], dtype=dtype, device=device)))
    return blocks


class _Plan:
    """Everything that depends only on (input size, anchor): weights, kept columns, tile index."""

    def __init__(self, height: int, width: int, anchor_type: str, device: torch.device, dtype: torch.dtype,
                 block: int):
        new_w = resized_width(width, height)
        if new_w < 1:
            raise ValueError(f"frame size {width}x{height}: resized width is {new_w} px (too narrow)")
        if new_w >= INPUT_WIDTH:
            c0 = {"left": 0, "right": new_w - INPUT_WIDTH}.get(anchor_type, (new_w - INPUT_WIDTH) // 2)
            kept, self.tile = np.arange(c0, c0 + INPUT_WIDTH), None
        else:
            kept = np.arange(new_w)
            self.tile = torch.as_tensor(mirror_tile_index(new_w, anchor_type), device=device)
        self.h_slice = (int(kept[0]), int(kept[-1]) + 1) if width == new_w else None
        self.h_blocks = None if width == new_w else _blocks(pil_lanczos_matrix(width, new_w)[kept], block,
                                                            device, dtype)
        self.v_blocks = None if height == INPUT_HEIGHT else _blocks(pil_lanczos_matrix(height, INPUT_HEIGHT),
                                                                    max(1, block // 2), device, dtype)
        self.kept = len(kept)


def _round_u8(x: torch.Tensor) -> torch.Tensor:
    return x.add_(0.5).floor_().clamp_(0.0, 255.0)


class FramePreprocessor:
    """``uint8 (N, H, W, 3)`` RGB frames -> ``float32 (N, 3, 48, 480)`` ImageNet-normalized, on ``device``.

    ``dtype``: arithmetic of the resize (``float32`` default; ``float64`` is bit-exact vs Pillow).
    ``block``: output columns per banded block of the horizontal pass (rows: half of it).
    Plans (weights per input size and anchor) are cached, so a video's frames pay for them once.
    """

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, block: int = 32):
        self.device = torch.device(device)
        self.dtype = dtype
        self.block = block
        self._plans: dict[tuple[int, int, str], _Plan] = {}
        self._scale = torch.as_tensor(1.0 / (255.0 * IMAGENET_STD), device=self.device).view(1, 3, 1, 1)
        self._shift = torch.as_tensor(-IMAGENET_MEAN / IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def _plan(self, height: int, width: int, anchor_type: str) -> _Plan:
        key = (height, width, anchor_type)
        if key not in self._plans:
            self._plans[key] = _Plan(height, width, anchor_type, self.device, self.dtype, self.block)
        return self._plans[key]

    def __call__(self, frames: np.ndarray | torch.Tensor, anchor_type: str) -> torch.Tensor:
        """Preprocess a batch; ``anchor_type`` as in :func:`modal_gpu.preprocess_reference.anchor_resize`.

        Raises:
            ValueError: ``frames`` is not ``uint8 (N, H, W, 3)``, or too narrow to resize.
        """
        x = torch.as_tensor(frames)
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames: expected uint8 (N, H, W, 3), got {x.dtype} {tuple(x.shape)}")
        n, height, width, _ = x.shape
        plan = self._plan(height, width, anchor_type)
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).to(self.dtype)  # (N, 3, H, W)
        if plan.h_blocks is not None:
            rows = x.reshape(n * 3 * height, width)
            out = torch.empty(n * 3 * height, plan.kept, dtype=self.dtype, device=self.device)
            for blk in plan.h_blocks:
                out[:, blk.out_lo:blk.out_hi] = F.linear(rows[:, blk.in_lo:blk.in_hi], blk.weight)
            x = _round_u8(out).view(n * 3, height, plan.kept)
        else:
            x = x[..., plan.h_slice[0]:plan.h_slice[1]].reshape(n * 3, height, plan.kept)
        if plan.v_blocks is not None:
            out = torch.empty(n * 3, INPUT_HEIGHT, plan.kept, dtype=self.dtype, device=self.device)
            for blk in plan.v_blocks:
                out[:, blk.out_lo:blk.out_hi].copy_(torch.matmul(blk.weight, x[:, blk.in_lo:blk.in_hi]))
            x = _round_u8(out)
        x = x.view(n, 3, INPUT_HEIGHT, plan.kept)
        if plan.tile is not None:
            x = x.index_select(3, plan.tile)
        return torch.addcmul(self._shift, x.to(torch.float32), self._scale)

