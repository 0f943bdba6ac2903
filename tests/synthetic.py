"""Synthetic caption-band videos for tests: known captions over a moving textured background."""

from __future__ import annotations

import numpy as np


def caption_band_video(n: int, *, height: int = 40, width: int = 320, seed: int = 0,
                       period: int = 30) -> np.ndarray:
    """``uint8 (n, height, width, 3)``: a drifting noise background; every ``period`` frames the caption
    cycles through (absent, text A, text B) — white blocks with a dark outline standing in for glyphs."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 120, (height, width * 2, 3), dtype=np.uint8)
    out = np.empty((n, height, width, 3), np.uint8)
    glyphs = [rng.integers(0, 2, (5, 24)).astype(bool) for _ in range(2)]
    for i in range(n):
        shift = (i * 3) % width
        frame = bg[:, shift: shift + width].copy()
        state = (i // period) % 3
        if state:
            g = np.kron(glyphs[state - 1], np.ones((height // 8, width // 48), bool))
            y0 = (height - g.shape[0]) // 2
            x0 = (width - g.shape[1]) // 2
            region = frame[y0: y0 + g.shape[0], x0: x0 + g.shape[1]]
            region[g] = 255
        out[i] = frame
    return out
