"""ModelPredictor: the PairPredictor contract on real frames, both directions, vs a direct reference run."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from boundaries.errors import CheckpointError, LayoutError  # noqa: E402
from boundaries.layout_config import LayoutConfig  # noqa: E402
from modal_gpu.checkpoint import save_checkpoint  # noqa: E402
from modal_gpu.inference_options import InferenceOptions  # noqa: E402
from modal_gpu.model import build_model, randomize_for_tests_  # noqa: E402
from modal_gpu.model_predictor import ModelPredictor  # noqa: E402
from modal_gpu.predictor import load_predictor  # noqa: E402
from modal_gpu.preprocess_reference import reference_transform  # noqa: E402
from modal_gpu.spatial import spatial_features  # noqa: E402

pytestmark = pytest.mark.gpu

PROB_TOL = 2e-3  # fused model + fast float32 preprocessing (<= 1 grey level) vs unfused model on PIL inputs


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("pred") / "model.pt"
    model = randomize_for_tests_(build_model(), seed=5)
    version, sha = save_checkpoint(model, path, wandb_run_id="run12345")
    return path, model, version, sha


@pytest.fixture(scope="module")
def frames_and_layout(real_data):
    import av

    frames = []
    with av.open(str(real_data / "derived/popeye_burn10/T00-1_p3_srtburn_10fps.mp4")) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i >= 38:  # around a caption change
                frames.append(frame.to_ndarray(format="rgb24")[440:538])
            if len(frames) == 4:
                break
    crop = np.stack(frames)
    ocr = np.zeros_like(crop[0])
    ocr[30:70, 150:570] = 255  # a box where the caption text sits
    buf = io.BytesIO()
    Image.fromarray(ocr).save(buf, format="PNG")
    layout = LayoutConfig(720, 538, 0, 440, 720, 538, "center", buf.getvalue())
    return crop, layout


def reference_probs(model, frames, layout):
    """Straightforward per-sample run: PIL preprocessing, unfused model, one pair at a time."""
    ocr = torch.from_numpy(reference_transform(Image.open(io.BytesIO(layout.ocr_visualization_png)), "center"))[None]
    sp = torch.from_numpy(spatial_features(layout))[None]
    img = [torch.from_numpy(reference_transform(f, layout.anchor_type))[None] for f in frames]
    fwd, bwd = [], []
    with torch.inference_mode():
        for k in range(len(frames) - 1):
            fwd.append(model(ocr, img[k], img[k + 1], sp).softmax(1)[0].numpy())
            bwd.append(model(ocr, img[k + 1], img[k], sp).softmax(1)[0].numpy())
    return np.stack(fwd), np.stack(bwd)


@pytest.mark.parametrize("fuse", [True, False])
def test_predict_matches_reference_both_directions(checkpoint, frames_and_layout, fuse):
    # Given a users' checkpoint and 4 real frames (3 pairs; batch_size 4 -> steps of 2 pairs, so the
    # second step reuses the last preprocessed frame of the first)
    path, model, version, sha = checkpoint
    frames, layout = frames_and_layout
    predictor = ModelPredictor.from_checkpoint(path, device="cpu", batch_size=4, fuse=fuse,
                                               options=InferenceOptions(precision="fp32"))
    # When it predicts
    fwd, bwd = predictor.predict(frames, layout)
    # Then the contract holds and the numbers are the straightforward reference's
    assert (predictor.model_version, predictor.sha256) == (version, sha)
    assert fwd.shape == bwd.shape == (3, 5) and fwd.dtype == bwd.dtype == np.float32
    np.testing.assert_allclose(fwd.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(bwd.sum(1), 1.0, atol=1e-5)
    want_fwd, want_bwd = reference_probs(model, frames, layout)
    assert np.abs(fwd - want_fwd).max() < PROB_TOL
    assert np.abs(bwd - want_bwd).max() < PROB_TOL
    assert not np.allclose(want_fwd, want_bwd, atol=1e-6)  # the directions really differ


def test_ocr_image_is_preprocessed_once_per_layout(checkpoint, frames_and_layout):
    path, *_ = checkpoint
    _, layout = frames_and_layout
    predictor = ModelPredictor.from_checkpoint(path, device="cpu")
    assert predictor.ocr_tensor(layout) is predictor.ocr_tensor(layout)


def test_bad_inputs_are_named(checkpoint, frames_and_layout):
    path, *_ = checkpoint
    frames, layout = frames_and_layout
    predictor = ModelPredictor.from_checkpoint(path, device="cpu")
    with pytest.raises(ValueError, match="frames"):
        predictor.predict(frames[:1], layout)
    with pytest.raises(ValueError, match="frames"):
        predictor.predict(frames.astype(np.float32), layout)
    bad = LayoutConfig(720, 538, 0, 440, 720, 538, "center", b"not a png")
    with pytest.raises(LayoutError, match="ocr_visualization_image"):
        predictor.predict(frames, bad)


def test_load_predictor_dispatches_to_model(checkpoint, tmp_path):
    path, _, version, _ = checkpoint
    predictor = load_predictor(str(path), device="cpu", batch_size=8)
    assert isinstance(predictor, ModelPredictor) and predictor.model_version == version
    with pytest.raises(CheckpointError):
        load_predictor(str(tmp_path / "missing.pt"), device="cpu")
