"""A text-likelihood map of the crop, stored as layout.db's ``ocr_visualization_image``.

Upstream draws every OCR box of the video on the crop (COMPAT.md §3). Videos ingested by this
project have no OCR, so the prior is computed from the frames themselves: caption text is
high-contrast (light glyphs with a dark outline) and stays at the same place, so the per-pixel
**frequency of strong edges** across sampled frames is high where text appears and low on
moving scenery.

Method (per sampled frame, every ``stride``-th frame): luma Y = 0.299 R + 0.587 G + 0.114 B
(0-255, float32); edge strength = max(|Y(x+1) - Y(x)|, |Y(y+1) - Y(y)|); a pixel counts when its
edge strength is >= ``threshold`` (default 64 grey levels). The map is count / frames sampled,
scaled so its maximum is 255 (all zero when no edge was ever strong), written as an RGB PNG of
the crop size (grey, R = G = B) with pillow. Memory: one float32 (H, W) accumulator.
"""

from __future__ import annotations

import io

import numpy as np


class OcrPriorAccumulator:
    """Feed every frame (uint8 ``(H, W, 3)`` RGB) in order; :meth:`png` returns the map."""

    def __init__(self, width: int, height: int, *, stride: int = 5, threshold: float = 64.0):
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.width, self.height, self.stride, self.threshold = width, height, stride, threshold
        self._counts = np.zeros((height, width), np.float32)
        self._seen = 0
        self.sampled = 0

    def add(self, frame) -> None:
        """``frame``: uint8 ``(H, W, 3)`` RGB, or an ``av.VideoFrame`` (converted to RGB only when sampled)."""
        n = self._seen
        self._seen += 1
        if n % self.stride:
            return
        if not isinstance(frame, np.ndarray):
            frame = frame.to_ndarray(format="rgb24")
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"frame must be {(self.height, self.width, 3)}, got {frame.shape}")
        y = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        edge = np.zeros_like(y)
        if self.width > 1:
            edge[:, :-1] = np.abs(np.diff(y, axis=1))
        if self.height > 1:
            np.maximum(edge[:-1, :], np.abs(np.diff(y, axis=0)), out=edge[:-1, :])
        self._counts += edge >= self.threshold
        self.sampled += 1

    def map(self) -> np.ndarray:
        """uint8 ``(H, W)``: edge frequency scaled to 0-255."""
        peak = float(self._counts.max()) if self.sampled else 0.0
        if peak <= 0:
            return np.zeros((self.height, self.width), np.uint8)
        return np.round(self._counts * (255.0 / peak)).astype(np.uint8)

    def png(self) -> bytes:
        """RGB PNG bytes of :meth:`map` (crop size)."""
        from PIL import Image

        m = self.map()
        buf = io.BytesIO()
        Image.fromarray(np.stack([m, m, m], axis=-1)).save(buf, format="PNG")
        return buf.getvalue()
