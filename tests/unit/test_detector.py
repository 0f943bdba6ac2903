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
    # given: a 3-frame caption (the shortest the detector is built to see, 0.3 s) between empty frames
    a = caption_mask(4)
    frames = np.stack([draw(background(5), None)] + [draw(background(5), a)] * 3 + [draw(background(5), None)])
    fwd, bwd = ClassicalDetector().predict(frames, LAYOUT)
    assert fwd.shape == bwd.shape == (4, 5) and fwd.dtype == bwd.dtype == np.float32
    np.testing.assert_allclose(fwd.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(bwd[:, :3], fwd[:, :3], atol=1e-6)
    np.testing.assert_allclose(bwd[:, 3], fwd[:, 4], atol=1e-6)
    np.testing.assert_allclose(bwd[:, 4], fwd[:, 3], atol=1e-6)
    assert [LABELS[i] for i in bwd.argmax(axis=1)] == ["valid_empty", "same", "same", "empty_valid"]


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


def moving_clutter(bg: np.ndarray, i: int, n: int = 200) -> np.ndarray:
    """``bg`` with bright 2-px specks and strokes that move 9 px per frame (foam, sparkles)."""
    out = bg.copy()
    rng = np.random.default_rng(99)
    for _ in range(n):
        x, y, tall = int(rng.integers(0, W)), int(rng.integers(2, H - 12)), int(rng.integers(3, 10))
        x = (x + 9 * i) % (W - 2)
        out[y:y + tall, x:x + 2] = 245
    return out


def test_moving_bright_clutter_behind_a_caption_is_not_a_change():
    # given: one caption for 12 frames over a panning background with moving bright clutter under it
    a = caption_mask(8)
    frames = np.stack([draw(moving_clutter(background(11, 5 * i), i), a) for i in range(12)])
    # then: the caption's own strokes decide; no spurious `different`
    assert labels(frames) == ["same"] * 11


def test_one_empty_frame_between_two_captions_is_an_end_and_a_start():
    # given: caption A x4, one empty frame, caption B x4 (back-to-back cues with a 0.1 s gap)
    a, b = caption_mask(12), caption_mask(13)
    frames = np.stack([draw(background(14, 3 * i), a) for i in range(4)] + [draw(background(14, 12), None)]
                      + [draw(background(14, 3 * i), b) for i in range(5, 9)])
    assert labels(frames) == ["same"] * 3 + ["valid_empty", "empty_valid"] + ["same"] * 3


def test_direct_replacement_is_one_different():
    a, b = caption_mask(15), caption_mask(16)
    frames = np.stack([draw(background(17, 4 * i), a if i < 5 else b) for i in range(10)])
    assert labels(frames) == ["same"] * 4 + ["different"] + ["same"] * 4


def test_caption_cut_by_a_window_seam_is_seen_in_both_windows():
    # given: windows [0, 7] and [7, 13] (one shared frame, as predict_range forms them); the caption
    # spans frames 6..11, so the first window holds only its first 2 frames
    a = caption_mask(18)
    frames = np.stack([draw(background(19, 6 * i), a if 6 <= i <= 11 else None) for i in range(14)])
    f1, _ = ClassicalDetector().predict(frames[:8], LAYOUT)
    f2, _ = ClassicalDetector().predict(frames[7:], LAYOUT)
    got = [LABELS[i] for i in np.concatenate([f1, f2]).argmax(axis=1)]
    assert got == ["empty_empty"] * 5 + ["empty_valid"] + ["same"] * 5 + ["valid_empty"] + ["empty_empty"]


def test_thin_letterbox_dashes_are_not_a_caption():
    # given: a black letterbox band with static 1-px bright dashes (picture edge) and faint noise
    rng = np.random.default_rng(21)
    band = np.zeros((H, W, 3), np.uint8)
    for y in (3, 4, 40):
        for x0 in range(0, W, 37):
            band[y, x0:x0 + int(rng.integers(8, 30))] = 200
    frames = np.stack([np.clip(band + rng.integers(0, 6, band.shape), 0, 255).astype(np.uint8) for _ in range(8)])
    assert labels(frames) == ["empty_empty"] * 7


@pytest.mark.parametrize("colour", [(255, 230, 40), (60, 235, 255), (70, 240, 90)], ids=["yellow", "cyan", "green"])
def test_coloured_caption_without_outline_is_found(colour):
    """Yellow, cyan and green strokes (no outline, no box) over a dark moving ground: the stroke
    mask uses max(R, G, B), so a light stroke of any colour counts (min(R, G, B) lost them)."""
    mask = caption_mask(3)
    frames = []
    for i in range(30):
        f = (background(5, shift=4 * i) // 3).astype(np.uint8)
        if 10 <= i < 20:
            f[mask] = colour
        frames.append(f)
    got = labels(np.stack(frames))
    assert got[9] == "empty_valid" and got[19] == "valid_empty", got
    assert got[10:19] == ["same"] * 9 and got[:9] == ["empty_empty"] * 9, got


def test_caption_over_a_static_texture_is_found():
    """A static high-contrast texture (it agrees with itself like a caption) fills the band; a caption
    comes and goes twice. The texture is in every frame, so it is dropped as background."""
    rng = np.random.default_rng(7)
    tex = np.kron(rng.integers(0, 2, (H // 3, W // 3)), np.ones((3, 3), int)).astype(bool)
    ground = np.where(tex[..., None], 200, 60).astype(np.uint8).repeat(3, axis=2)
    mask = caption_mask(4)
    frames = []
    for i in range(60):
        f = ground.copy()
        if 10 <= i < 25 or 35 <= i < 50:
            f = draw(f, mask)
        frames.append(f)
    got = labels(np.stack(frames))
    # the events, at the right pairs (their type may read "different": the caption's outline hides
    # texture that is there without it, so the caption-less frame seems to lose strokes too)
    assert [k for k, x in enumerate(got) if x != "same" and x != "empty_empty"] == [9, 24, 34, 49], got
