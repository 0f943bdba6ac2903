"""PIL reference preprocessing, exactly as COMPAT.md §4 (the users' training transform).

Per image: LANCZOS resize to height 48 keeping the aspect ratio (new width ``int(48 * w / h)``), then
to width 480 by anchor crop (wider) or mirror-tiling with horizontally flipped copies away from the
anchor (narrower), then ImageNet normalization to ``float32 (3, 48, 480)``.

Slow on purpose: it is the yardstick :mod:`modal_gpu.preprocess` is checked against, and what the
upstream service ran per sample (6 transforms per pair).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from modal_gpu.model import INPUT_HEIGHT, INPUT_WIDTH

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def resized_width(width: int, height: int, target_height: int = INPUT_HEIGHT) -> int:
    """Width in pixels after the aspect-preserving resize to ``target_height`` (truncated, as upstream)."""
    return int(target_height * (width / height))


def _fill_right(canvas: Image.Image, src: Image.Image, start: int) -> None:
    flipped = src.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x = start
    while x < canvas.width:
        n = min(src.width, canvas.width - x)
        canvas.paste(flipped.crop((0, 0, n, src.height)), (x, 0))
        x += n


def _fill_left(canvas: Image.Image, src: Image.Image, end: int) -> None:
    flipped = src.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x = end
    while x > 0:
        n = min(src.width, x)
        canvas.paste(flipped.crop((src.width - n, 0, src.width, src.height)), (x - n, 0))
        x -= n


def anchor_resize(image: Image.Image, anchor_type: str, width: int = INPUT_WIDTH,
                  height: int = INPUT_HEIGHT) -> Image.Image:
    """RGB ``image`` -> RGB ``(width x height)`` image (steps 1-2 of COMPAT.md §4).

    ``anchor_type``: ``left``/``center``/``right``; anything else is treated as ``center``.

    Raises:
        ValueError: the image is so narrow that the resized width would be 0 pixels.
    """
    new_w = resized_width(image.width, image.height, height)
    if new_w < 1:
        raise ValueError(f"image size {image.width}x{image.height}: resized width is {new_w} px")
    resized = image.resize((new_w, height), Image.Resampling.LANCZOS)
    if new_w == width:
        return resized
    if new_w > width:
        left = {"left": 0, "right": new_w - width}.get(anchor_type, (new_w - width) // 2)
        return resized.crop((left, 0, left + width, height))
    canvas = Image.new("RGB", (width, height))
    if anchor_type == "left":
        canvas.paste(resized, (0, 0))
        _fill_right(canvas, resized, new_w)
    elif anchor_type == "right":
        canvas.paste(resized, (width - new_w, 0))
        _fill_left(canvas, resized, width - new_w)
    else:
        off = (width - new_w) // 2
        canvas.paste(resized, (off, 0))
        _fill_right(canvas, resized, off + new_w)
        _fill_left(canvas, resized, off)
    return canvas


def normalize(image: Image.Image) -> np.ndarray:
    """RGB image -> ``float32 (3, H, W)``: ``(x / 255 - mean) / std`` with ImageNet mean/std."""
    x = (np.asarray(image, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def reference_transform(image: Image.Image | np.ndarray, anchor_type: str) -> np.ndarray:
    """One image (PIL, or ``uint8 (H, W, 3)`` RGB array) -> ``float32 (3, 48, 480)`` ImageNet-normalized."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return normalize(anchor_resize(image.convert("RGB"), anchor_type))
