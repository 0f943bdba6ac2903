"""Fast batched preprocessing on the model's device (COMPAT.md §4), checked against the PIL reference.

Each frame is resized once (both inference directions reuse it) and the OCR image once per video.
The resize reproduces Pillow's LANCZOS exactly: Pillow's own filter coefficients (support 3 scaled by
the downscale factor, normalized, rounded to 22-bit fixed point), two separable passes in Pillow's
order (probed once per size, see :func:`pillow_resizes_vertically_first`), each pass rounded and
clipped to 0..255 like Pillow's 8-bit image between and after the passes. Both passes are
banded matrix products cut into blocks, and the anchor crop / mirror-tile is folded into the kept
columns plus one gather. With ``float64`` arithmetic the result is bit-identical to Pillow; with the
default ``float32``, sums of 13-14 taps can land on the other side of a .5 rounding boundary, so a
value may differ by 1 grey level (<= 1/255/0.224 = 0.0175 after normalization; see
``tests/unit/test_preprocess.py``).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from modal_gpu.model import INPUT_HEIGHT, INPUT_WIDTH
from modal_gpu.preprocess_reference import IMAGENET_MEAN, IMAGENET_STD, resized_width

PRECISION_BITS = 32 - 8 - 2
"""Pillow's fixed-point precision for 8-bit resampling (``Resample.c``)."""
LANCZOS_SUPPORT = 3.0
V_BLOCK = 16
"""Output rows per block of the vertical pass (divides 48)."""


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


def _uniform_blocks(mat: np.ndarray, rows_per_block: int, device: torch.device,
                    dtype: torch.dtype) -> tuple[torch.Tensor, list[int]]:
    """``mat (out, in)`` cut into ``G`` blocks of ``rows_per_block`` rows (zero-padded) and one common
    window width ``L``: returns weights ``(G, rows_per_block, L)`` and each block's window start."""
    n_out, n_in = mat.shape
    n_blocks = -(-n_out // rows_per_block)
    padded = np.zeros((n_blocks * rows_per_block, n_in))
    padded[:n_out] = mat
    spans = []
    for b in range(n_blocks):
        nz = np.nonzero(np.any(padded[b * rows_per_block:(b + 1) * rows_per_block] != 0, axis=0))[0]
        spans.append((int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 1))
    width = min(max(hi - lo for lo, hi in spans), n_in)
    starts = [min(lo, n_in - width) for lo, _ in spans]
    weights = np.stack([padded[b * rows_per_block:(b + 1) * rows_per_block, lo:lo + width]
                        for b, lo in enumerate(starts)])
    return torch.as_tensor(weights, dtype=dtype, device=device), starts


@functools.lru_cache(maxsize=64)
def pillow_resizes_vertically_first(height: int, width: int, new_height: int, new_width: int) -> bool:
    """Whether the installed Pillow's LANCZOS resize of this size runs its vertical pass first.

    Pillow's documented C code resamples horizontally first, but Pillow 13 was measured to round as if
    it resized vertically first for some (mostly tall) sizes, with no rule we could pin down. The
    8-bit rounding between passes makes the order visible, so it is probed once per size: a fixed
    random image is resized by Pillow and by both exact float64 orders, and the matching one wins.
    """
    if height == new_height or width == new_width:
        return False
    x = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(x).resize((new_width, new_height), Image.Resampling.LANCZOS))
    wh, wv = pil_lanczos_matrix(width, new_width), pil_lanczos_matrix(height, new_height)
    xf = x.astype(np.float64).transpose(2, 0, 1)  # (3, H, W)

    def rnd(a: np.ndarray) -> np.ndarray:
        return np.clip(np.floor(a + 0.5), 0, 255)

    h_first = rnd(wv @ rnd(xf @ wh.T)).transpose(1, 2, 0)
    if np.array_equal(h_first, want):
        return False
    v_first = rnd(rnd(wv @ xf) @ wh.T).transpose(1, 2, 0)
    return bool(np.array_equal(v_first, want))


class _Plan:
    """Everything that depends only on (input size, anchor): weights, pass order, kept columns, tile index."""

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
        self.h_slice = (int(kept[0]), int(kept[-1]) + 1)
        self.h_blocks = None if width == new_w else _blocks(pil_lanczos_matrix(width, new_w)[kept], block,
                                                            device, dtype)
        self.v_blocks = None if height == INPUT_HEIGHT else _blocks(pil_lanczos_matrix(height, INPUT_HEIGHT),
                                                                    max(1, block // 2), device, dtype)
        self.vertical_first = pillow_resizes_vertically_first(height, width, INPUT_HEIGHT, new_w)
        self.kept = len(kept)
        # Fast path (horizontal pass first, both passes needed): uniform blocks written block-major.
        self.fast = not self.vertical_first and self.h_blocks is not None and self.v_blocks is not None
        if self.fast:
            self.g, self.gv = block, V_BLOCK
            self.hw, self.h_starts = _uniform_blocks(pil_lanczos_matrix(width, new_w)[kept], block, device, dtype)
            self.vw, self.v_starts = _uniform_blocks(pil_lanczos_matrix(height, INPUT_HEIGHT), V_BLOCK, device,
                                                     dtype)


@contextlib.contextmanager
def _no_tf32():
    """TF32 matmuls (10-bit mantissa) would cost several grey levels; force full fp32 while resizing."""
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


def _round_u8(x: torch.Tensor) -> torch.Tensor:
    return x.add_(0.5).floor_().clamp_(0.0, 255.0)


def _h_pass(x: torch.Tensor, plan: _Plan) -> torch.Tensor:
    """``(B, R, W)`` -> ``(B, R, kept)``: horizontal resample of the kept columns, rounded to 0..255."""
    b, r, w = x.shape
    if plan.h_blocks is None:
        return x[..., plan.h_slice[0]:plan.h_slice[1]]
    rows = x.reshape(b * r, w)
    out = torch.empty(b * r, plan.kept, dtype=x.dtype, device=x.device)
    for blk in plan.h_blocks:
        out[:, blk.out_lo:blk.out_hi] = F.linear(rows[:, blk.in_lo:blk.in_hi], blk.weight)
    return _round_u8(out).view(b, r, plan.kept)


def _v_pass(x: torch.Tensor, plan: _Plan) -> torch.Tensor:
    """``(B, H, C)`` -> ``(B, 48, C)``: vertical resample, rounded to 0..255."""
    if plan.v_blocks is None:
        return x
    out = torch.empty(x.shape[0], INPUT_HEIGHT, x.shape[2], dtype=x.dtype, device=x.device)
    for blk in plan.v_blocks:
        out[:, blk.out_lo:blk.out_hi] = torch.matmul(blk.weight, x[:, blk.in_lo:blk.in_hi])
    return _round_u8(out)


class FramePreprocessor:
    """``uint8 (N, H, W, 3)`` RGB frames -> ``float32 (N, 3, 48, 480)`` ImageNet-normalized, on ``device``.

    ``dtype``: arithmetic of the resize (``float32`` default; ``float64`` is bit-exact vs Pillow).
    ``block``: output columns per banded block of the horizontal pass. ``chunk_frames``: frames per
    internal step (default 16 on CPU, where cache-sized scratch buffers are ~1.7x faster; 256 on CUDA).
    Not thread-safe (scratch buffers are reused).
    Plans (weights per input size and anchor) are cached, so a video's frames pay for them once.
    """

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, block: int = 32,
                 chunk_frames: int | None = None):
        self.device = torch.device(device)
        self.chunk_frames = chunk_frames or (256 if self.device.type == "cuda" else 16)
        self.dtype = dtype
        self.block = block
        self._plans: dict[tuple[int, int, str], _Plan] = {}
        self._work: dict[str, torch.Tensor] = {}
        self._scale = torch.as_tensor(1.0 / (255.0 * IMAGENET_STD), device=self.device).view(1, 3, 1, 1)
        self._shift = torch.as_tensor(-IMAGENET_MEAN / IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def _plan(self, height: int, width: int, anchor_type: str) -> _Plan:
        key = (height, width, anchor_type)
        if key not in self._plans:
            self._plans[key] = _Plan(height, width, anchor_type, self.device, self.dtype, self.block)
        return self._plans[key]

    def _buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A reused scratch tensor (fresh allocations page-fault; reuse is ~3x cheaper on CPU)."""
        numel = int(np.prod(shape))
        buf = self._work.get(name)
        if buf is None or buf.numel() < numel:
            buf = self._work[name] = torch.empty(numel, dtype=self.dtype, device=self.device)
        return buf[:numel].view(shape)

    def _fast(self, x: torch.Tensor, plan: _Plan, out: torch.Tensor) -> None:
        """Horizontal-first resize + normalize of ``x uint8 (N, H, W, 3)`` into ``out (N, 3, 48, 480)``."""
        n, height, width, _ = x.shape
        g, gv, n_h, n_v = plan.g, plan.gv, len(plan.h_starts), len(plan.v_starts)
        lh, lv = plan.hw.shape[2], plan.vw.shape[2]
        c_lo, c_hi = min(plan.h_starts), max(plan.h_starts) + lh  # only the input columns the crop reads
        xin = self._buffer("in", (height, n, 3, c_hi - c_lo))  # rows ordered (H, N, C): H leads later
        xin.copy_(x[:, :, c_lo:c_hi].permute(1, 0, 3, 2))
        rows = xin.view(height * n * 3, c_hi - c_lo)
        hb = self._buffer("h", (n_h, height * n * 3, g))
        for b, lo in enumerate(plan.h_starts):
            torch.mm(rows[:, lo - c_lo:lo - c_lo + lh], plan.hw[b].T, out=hb[b])
        hv = _round_u8(hb).view(n_h, height, n * 3 * g)
        vb = self._buffer("v", (n_v, n_h, gv, n * 3 * g))
        for v, lo in enumerate(plan.v_starts):  # (gv, lv) @ (n_h, lv, N*3*g): wide GEMMs
            torch.matmul(plan.vw[v], hv[:, lo:lo + lv], out=vb[v])
        _round_u8(vb)
        src = vb.view(n_v, n_h, gv, n, 3, g).permute(3, 4, 0, 2, 1, 5)
        direct = plan.tile is None and plan.kept == n_h * g
        res = out if direct else torch.empty((n, 3, INPUT_HEIGHT, n_h * g), device=self.device)
        torch.addcmul(self._shift.view(1, 3, 1, 1, 1, 1), src, self._scale.view(1, 3, 1, 1, 1, 1),
                      out=res.view(n, 3, n_v, gv, n_h, g))
        if plan.tile is not None:
            torch.index_select(res, 3, plan.tile, out=out)
        elif not direct:
            out.copy_(res[..., :plan.kept])

    def __call__(self, frames: np.ndarray | torch.Tensor, anchor_type: str,
                 out: torch.Tensor | None = None) -> torch.Tensor:
        """Preprocess a batch; ``anchor_type`` as in :func:`modal_gpu.preprocess_reference.anchor_resize`.

        ``out``: optional contiguous ``float32 (N, 3, 48, 480)`` tensor on the device to write into
        (reusing one saves the page faults of a fresh allocation); the result is returned either way.

        Raises:
            ValueError: ``frames`` is not ``uint8 (N, H, W, 3)``, or too narrow to resize; ``out`` of
                another shape.
        """
        with warnings.catch_warnings():  # read-only arrays (decoders, PIL) are only ever read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            x = torch.as_tensor(frames)
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames: expected uint8 (N, H, W, 3), got {x.dtype} {tuple(x.shape)}")
        n, height, width, _ = x.shape
        if out is not None and (tuple(out.shape) != (n, 3, INPUT_HEIGHT, INPUT_WIDTH) or not out.is_contiguous()
                                or out.dtype != torch.float32):
            raise ValueError(f"out: expected contiguous float32 ({n}, 3, 48, 480), got {out.dtype} {tuple(out.shape)}")
        plan = self._plan(height, width, anchor_type)
        x = x.to(self.device, non_blocking=True)
        if plan.fast:
            if out is None:
                out = torch.empty((n, 3, INPUT_HEIGHT, INPUT_WIDTH), device=self.device)
            with _no_tf32():
                for i in range(0, n, self.chunk_frames):  # chunks keep the scratch buffers cache-sized
                    self._fast(x[i:i + self.chunk_frames], plan, out[i:i + self.chunk_frames])
            return out
        x = x.permute(0, 3, 1, 2)
        x = x.to(self.dtype, memory_format=torch.contiguous_format)  # (N, 3, H, W), one pass
        x = x.reshape(n * 3, height, width)
        with _no_tf32():
            x = _h_pass(_v_pass(x, plan), plan) if plan.vertical_first else _v_pass(_h_pass(x, plan), plan)
        x = x.reshape(n, 3, INPUT_HEIGHT, plan.kept)
        if plan.tile is not None:
            x = x.index_select(3, plan.tile)
        return torch.addcmul(self._shift, x.to(torch.float32), self._scale, out=out)
