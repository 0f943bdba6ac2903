"""Fast batched preprocessing vs the PIL reference (COMPAT.md §4), on real caption crops; spatial features.

Stated tolerances: the ``float64`` path is bit-identical to Pillow; the default ``float32`` path differs by
at most 1 grey level (1/255/0.224 ≈ 0.0175 after normalization) on at most 0.1 % of values.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from boundaries.layout_config import LayoutConfig  # noqa: E402
from modal_gpu.preprocess import FramePreprocessor, mirror_tile_index, pil_lanczos_matrix  # noqa: E402
from modal_gpu.preprocess_reference import anchor_resize, reference_transform  # noqa: E402
from modal_gpu.spatial import spatial_features  # noqa: E402

pytestmark = pytest.mark.gpu

ONE_GREY_LEVEL = 1.0 / 255.0 / 0.224 + 1e-5
ANCHORS = ("left", "center", "right", "bogus")


def decode(path, n: int, start: int = 0) -> np.ndarray:
    import av

    out = []
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i >= start:
                out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == n:
                break
    return np.stack(out)


@pytest.fixture(scope="module")
def real_crops(real_data) -> dict[str, np.ndarray]:
    popeye = decode(real_data / "derived/popeye_burn10/T00-1_p3_srtburn_10fps.mp4", 3, start=40)
    anime = decode(real_data / "rapidvideocr/2.mp4", 3, start=10)
    return {
        "popeye_720x98_tile": np.ascontiguousarray(popeye[:, 440:538]),  # new width 352 < 480: mirror-tile
        "anime_1920x150_crop": np.ascontiguousarray(anime[:, 640:790]),  # new width 614 > 480: anchor crop
        "anime_402x27_crop": np.ascontiguousarray(anime[:, 700:727, 700:1102]),  # 714 px wide after resize
        "popeye_300x100_tile": np.ascontiguousarray(popeye[:, 430:530, 200:500]),  # 144 px: 3+ tiles
    }


@pytest.mark.parametrize("anchor", ANCHORS)
def test_float64_path_is_bit_identical_to_pillow(real_crops, anchor):
    fast = FramePreprocessor(dtype=torch.float64)
    for name, frames in real_crops.items():
        want = np.stack([reference_transform(f, anchor) for f in frames])
        got = fast(frames, anchor).numpy()
        assert got.shape == (len(frames), 3, 48, 480) and got.dtype == np.float32
        assert np.abs(got - want).max() < 1e-5, name  # identical pixels; float32 normalize rounding only


@pytest.mark.parametrize("anchor", ANCHORS)
def test_float32_path_within_one_grey_level(real_crops, anchor):
    fast = FramePreprocessor()
    for name, frames in real_crops.items():
        want = np.stack([reference_transform(f, anchor) for f in frames])
        diff = np.abs(fast(frames, anchor).numpy() - want)
        assert diff.max() <= ONE_GREY_LEVEL, name
        assert (diff > 1e-5).mean() <= 1e-3, name


def test_synthetic_sizes_and_exact_fit():
    rng = np.random.default_rng(0)
    fast = FramePreprocessor(dtype=torch.float64)
    for h, w in [(48, 480), (96, 960), (48, 200), (100, 1000), (7, 300), (200, 90)]:
        frames = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        for anchor in ("left", "center", "right"):
            want = np.stack([reference_transform(f, anchor) for f in frames])
            assert np.abs(fast(frames, anchor).numpy() - want).max() < 1e-5, (h, w, anchor)


def test_mirror_tile_fills_away_from_anchor():
    # Given a 5 px wide image 0..4 tiled to 12 px
    assert mirror_tile_index(5, "left", 12).tolist() == [0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 4, 3]
    assert mirror_tile_index(5, "right", 12).tolist() == [1, 0, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4]
    assert mirror_tile_index(5, "center", 12).tolist() == [2, 1, 0, 0, 1, 2, 3, 4, 4, 3, 2, 1]


def _ramp(width: int) -> Image.Image:
    """A 1 px tall RGB image whose column c has value 40 * c (so index = value // 40)."""
    return Image.fromarray(np.repeat((np.arange(width, dtype=np.uint8) * 40)[None, :, None], 3, axis=2))


@pytest.mark.parametrize("anchor", ("left", "center", "right"))
def test_mirror_tile_index_matches_reference_paste(anchor):
    for width in (1, 2, 5, 7):
        got = mirror_tile_index(width, anchor, 23)
        ref = np.asarray(anchor_resize(_ramp(width), anchor, 23, 1))[0, :, 0] // 40
        assert got.tolist() == ref.tolist(), (width, anchor)


def test_lanczos_rows_sum_to_one():
    m = pil_lanczos_matrix(1280, 614)
    assert m.shape == (614, 1280)
    assert np.allclose(m.sum(axis=1), 1.0, atol=16 / 2**22)
    assert (m != 0).sum(axis=1).max() <= 2 * int(np.ceil(3 * 1280 / 614)) + 1


def test_rejects_non_uint8_frames():
    with pytest.raises(ValueError, match="frames"):
        FramePreprocessor()(np.zeros((2, 10, 10, 3), dtype=np.float32), "left")
    with pytest.raises(ValueError, match="frames"):
        FramePreprocessor()(np.zeros((10, 10, 3), dtype=np.uint8), "left")


def _layout(anchor: str, fw: int = 1920, fh: int = 1080) -> LayoutConfig:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    return LayoutConfig(fw, fh, 320, 900, 1600, 1000, anchor, buf.getvalue())


def test_spatial_features_follow_compat():
    got = spatial_features(_layout("left"))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [1, 0, 0, (320 + 1600) / 2 / 1920, (900 + 1000) / 2 / 1080, 1280 / 1920],
                               rtol=1e-6)
    assert spatial_features(_layout("right"))[:3].tolist() == [0, 0, 1]
    assert spatial_features(_layout("diagonal"))[:3].tolist() == [0, 1, 0]


def test_spatial_features_fallbacks():
    got = spatial_features(_layout("center", fw=0, fh=0))
    np.testing.assert_allclose(got[3:], [0.5, 0.9, 0.5])


@pytest.mark.parametrize("block", [32, 40])
def test_out_buffer_gets_the_same_result(real_crops, block):
    fast = FramePreprocessor(block=block)
    for name, frames in real_crops.items():
        want = fast(frames, "right")
        out = torch.full((len(frames), 3, 48, 480), float("nan"))
        got = fast(frames, "right", out=out)
        assert got.data_ptr() == out.data_ptr(), name
        assert torch.equal(out, want), name
    with pytest.raises(ValueError, match="out"):
        fast(frames, "left", out=torch.empty(1, 3, 48, 480))


def test_chunked_equals_unchunked(real_crops):
    for name, frames in real_crops.items():
        want = FramePreprocessor(chunk_frames=16)(frames, "left")
        assert torch.equal(FramePreprocessor(chunk_frames=2)(frames, "left"), want), name
