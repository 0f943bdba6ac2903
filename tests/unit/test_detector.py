"""ClassicalDetector on synthetic caption bands: presence, change, scene cuts, replacement, mirroring."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from boundaries.errors import PermanentError
from boundaries.labels import LABELS
from boundaries.layout_config import LayoutConfig
from modal_gpu.detector import ClassicalDetector

H, W = 48, 480
LAYOUT = LayoutConfig(frame_width=1280, frame_height=720, crop_left=400, crop_top=640, crop_right=880,
                      crop_bottom=688, anchor_type="center", ocr_visualization_png=b"")


def background(seed: int, shift: int = 0) -> np.ndarray:
    """Smooth coloured gradient + mild noise; ``shift`` pans it (a moving background)."""
    rng = np.random.default_rng(seed)
    c0, c1 = rng.integers(40, 200, 3), rng.integers(40, 200, 3)
    x = (np.arange(W) + shift) % W / W
    img = c0[None, None, :] * (1 - x)[None, :, None] + c1[None, None, :] * x[None, :, None]
    img = np.repeat(img, H, axis=0) + rng.normal(0, 4, (H, W, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def caption_mask(seed: int) -> np.ndarray:
    """Random 'glyphs': 2-px white strokes in a text line of height 20 px."""
    rng = np.random.default_rng(seed)
    m = np.zeros((H, W), bool)
    for x0 in range(100, 380, 14):
        for _ in range(3):
            if rng.random() < 0.5:
                x = x0 + rng.integers(0, 10)
                m[14:34, x:x + 2] = True
            else:
                y = 14 + rng.integers(0, 19)
                m[y:y + 2, x0:x0 + 10] = True
    return m


def draw(bg: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    out = bg.copy()
    if mask is not None:
        outline = np.zeros_like(mask)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                outline |= np.roll(np.roll(mask, dy, 0), dx, 1)
        out[outline] = 10
        out[mask] = 250
    return out


def labels(frames: np.ndarray) -> list[str]:
    fwd, _ = ClassicalDetector().predict(frames, LAYOUT)
    return [LABELS[i] for i in fwd.argmax(axis=1)]


def test_presence_change_scene_cut_and_direct_replacement():
    # given: empty x3, caption A x3 over a panning background, A over a scene cut x3, caption B x3, empty x2
    a, b = caption_mask(1), caption_mask(2)
    frames = np.stack([draw(background(10, 7 * i), None) for i in range(3)]
                      + [draw(background(10, 7 * i), a) for i in range(3, 6)]
                      + [draw(background(20, 7 * i), a) for i in range(6, 9)]
                      + [draw(background(20, 7 * i), b) for i in range(9, 12)]
                      + [draw(background(30, 7 * i), None) for i in range(12, 14)])
    # when
    got = labels(frames)
    # then
    assert got == (["empty_empty"] * 2 + ["empty_valid"] + ["same"] * 5 + ["different"] + ["same"] * 2
                   + ["valid_empty"] + ["empty_empty"])


def test_low_contrast_caption_is_detected():
    # given: light-grey background, caption strokes only ~70 grey levels brighter, no outline
    bg = np.full((H, W, 3), 160, np.uint8)
    m = caption_mask(3)
    cap = bg.copy()
    cap[m] = 230
    frames = np.stack([bg, bg, cap, cap, cap])
    assert labels(frames) == ["empty_empty", "empty_valid", "same", "same"]


def test_backward_mirrors_forward_and_rows_are_probabilities():
    a = caption_mask(4)
    frames = np.stack([draw(background(5), None), draw(background(5), a), draw(background(5), a),
                       draw(background(5), None)])
    fwd, bwd = ClassicalDetector().predict(frames, LAYOUT)
    assert fwd.shape == bwd.shape == (3, 5) and fwd.dtype == bwd.dtype == np.float32
    np.testing.assert_allclose(fwd.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(bwd[:, :3], fwd[:, :3], atol=1e-6)
    np.testing.assert_allclose(bwd[:, 3], fwd[:, 4], atol=1e-6)
    np.testing.assert_allclose(bwd[:, 4], fwd[:, 3], atol=1e-6)
    assert [LABELS[i] for i in bwd.argmax(axis=1)] == ["valid_empty", "same", "empty_valid"]


def test_windowed_calls_agree_on_shared_frame_shapes():
    # predict on two windows overlapping by one frame yields N-1 pairs in total
    frames = np.stack([draw(background(6, i), caption_mask(7) if 3 <= i < 9 else None) for i in range(12)])
    f1, _ = ClassicalDetector().predict(frames[:7], LAYOUT)
    f2, _ = ClassicalDetector().predict(frames[6:], LAYOUT)
    got = [LABELS[i] for i in np.concatenate([f1, f2]).argmax(axis=1)]
    assert got == labels(frames)


@pytest.mark.parametrize("bad", [np.zeros((1, H, W, 3), np.uint8), np.zeros((3, H, W), np.uint8),
                                 np.zeros((3, H, W, 3), np.float32)])
def test_rejects_bad_frames(bad):
    with pytest.raises(PermanentError, match="frames must be uint8"):
        ClassicalDetector().predict(bad, LAYOUT)


def test_import_does_not_load_torch():
    code = "import sys, modal_gpu.detector; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
