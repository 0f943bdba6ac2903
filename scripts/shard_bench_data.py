"""Synthetic caption-band videos in an object store, for the shard-path benchmarks and device_check.

A 1280x100 band (panning textured scenery, light noise, bright glyph-like strokes changing every
3 s at 10 fps) is encoded once as a full 32-frame VP9 chunk plus the short tail chunk of each level
(:func:`boundaries.frames.writer.encode_chunk`), then stored under every chunk key of a video of
``total_frames`` frames: decode cost per frame is that of real caption chunks, setup stays seconds.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from boundaries.frames.keys import chunk_key
from boundaries.frames.layout import CHUNK_FRAMES, LEVELS, all_chunks, count_in_level
from boundaries.frames.writer import encode_chunk
from boundaries.layout_config import LayoutConfig


def band(i: int, width: int = 1280, height: int = 100, seed: int = 0) -> np.ndarray:
    """``uint8 (height, width, 3)`` RGB frame ``i`` of the synthetic caption band."""
    rng = np.random.default_rng((seed, i))
    yy, xx = np.mgrid[0:height, 0:width]
    bg = 70 + 45 * np.sin((xx + 4 * i) / 23.0) * np.cos(yy / 11.0 + i / 9.0)
    f = np.clip(np.stack([bg, bg + 12, bg - 12], -1) + rng.normal(0, 3, (height, width, 3)), 0, 255).astype(np.uint8)
    cue = np.random.default_rng(i // 30)
    for _ in range(cue.integers(25, 45)):
        x, y = int(cue.integers(width // 6, 5 * width // 6)), int(cue.integers(height // 4, 2 * height // 3))
        f[y:y + int(cue.integers(8, 25)), x:x + int(cue.integers(3, 14))] = 235
    return f


def write_video(store, prefix: str, total_frames: int, width: int = 1280, height: int = 100) -> None:
    """Store every chunk of a ``total_frames`` video under ``prefix`` (see module docstring)."""
    frames = [band(i, width, height) for i in range(CHUNK_FRAMES)]
    full = encode_chunk(frames, width, height)
    tails = {}
    for lvl in LEVELS:
        n = count_in_level(lvl, total_frames) % CHUNK_FRAMES
        tails[lvl] = encode_chunk(frames[:n], width, height) if n else full
    refs = all_chunks(total_frames)
    last = {lvl: max(r for r in refs if r.level == lvl) for lvl in LEVELS if any(r.level == lvl for r in refs)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda r: store.put_bytes(chunk_key(prefix, r), tails[r.level] if r == last[r.level]
                                                else full), refs))


def synthetic_layout(width: int = 1280, height: int = 100) -> LayoutConfig:
    """A centre-anchored layout of a ``width x height`` crop whose OCR image is frame 0 of the band."""
    png = io.BytesIO()
    Image.fromarray(band(0, width, height)).save(png, format="PNG")
    return LayoutConfig(1920, 1080, 320, 900, 320 + width, 900 + height, "center", png.getvalue())
