"""The shard path's decode/model overlap: windows joined at their seams, both predictor kinds, decode
errors surfacing from the prefetch thread, NVDEC falling back to the CPU decoder, decode workers."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from boundaries.errors import CorruptChunkError
from boundaries.frames.reader import default_decode_workers, iter_frames, read_frames
from boundaries.frames.writer import ChunkWriter
from boundaries.layout_config import LayoutConfig
from boundaries.storage.local import LocalStore
from modal_gpu.shard import predict_range

pytestmark = pytest.mark.integration
PREFIX = "t/v/cropped_frames_v1/"


def synth(i: int, w: int, h: int) -> np.ndarray:
    f = np.full((h, w, 3), 30 + 20 * ((i * 3) % 10), np.uint8)
    x = (i * 7) % max(1, w - 12)
    f[:, x:x + 12] = 255 if f[0, 0, 0] < 128 else 0
    return f


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """71 frames of 96x20 in a local store."""
    store = LocalStore(tmp_path_factory.mktemp("overlap"))
    with ChunkWriter(store, PREFIX, 96, 20) as wr:
        for i in range(71):
            wr.write(synth(i, 96, 20))
    return store


class FrameMeanPredictor:
    """A PairPredictor whose rows are a function of the two frames' contents (order-sensitive), so a
    pair read across a window seam from the wrong frame shows up."""

    model_version = "mean_00000000"

    def predict(self, frames, layout):
        m = frames.reshape(len(frames), -1).mean(1)
        a, b = m[:-1], m[1:]
        fwd = np.stack([a, b, a - b, np.zeros_like(a), np.ones_like(a)], 1).astype(np.float32)
        bwd = np.stack([b, a, b - a, np.zeros_like(a), np.ones_like(a)], 1).astype(np.float32)
        return fwd, bwd


LAYOUT = LayoutConfig(96, 20, 0, 0, 96, 20, "center", b"")


@pytest.mark.parametrize("window", [2, 7, 64, 256])
def test_windows_join_at_their_seams(video, window):
    # given frames 5..60 read in windows of `window` frames, prefetched while the previous is predicted
    fwd, bwd = predict_range(video, PREFIX, LAYOUT, 5, 60, FrameMeanPredictor(), window=window)
    # then every pair is the one computed from all frames at once
    want_f, want_b = FrameMeanPredictor().predict(read_frames(video, PREFIX, 5, 60).frames, LAYOUT)
    np.testing.assert_array_equal(fwd, want_f)
    np.testing.assert_array_equal(bwd, want_b)


def test_iter_frames_overlap_repeats_the_previous_last_frame(video):
    batches = list(iter_frames(video, PREFIX, 3, 30, window=10, overlap=1))
    assert [(int(b.indices[0]), int(b.indices[-1])) for b in batches] == [(3, 12), (12, 22), (22, 30)]
    whole = read_frames(video, PREFIX, 3, 30).frames
    for b in batches:
        np.testing.assert_array_equal(b.frames, whole[b.indices - 3])
    with pytest.raises(ValueError, match="overlap"):
        list(iter_frames(video, PREFIX, 3, 30, window=1, overlap=1))


def test_corrupt_chunk_raises_from_the_prefetch_thread(tmp_path, video):
    # given a copy of the video whose last modulo_1 chunk is garbage
    store = LocalStore(tmp_path)
    keys = sorted(video.list_keys(PREFIX))
    for key in keys:
        store.put_bytes(key, video.get_bytes(key))
    bad = [k for k in keys if "/modulo_1/" in k][-1]
    store.put_bytes(bad, b"\x1aE\xdf\xa3 not a webm")
    before = threading.active_count()
    # when the shard path reaches it, the reader's error surfaces in the caller, naming the chunk
    with pytest.raises(CorruptChunkError, match=bad.rsplit("/", 1)[1]):
        predict_range(store, PREFIX, LAYOUT, 0, 69, FrameMeanPredictor(), window=8)
    # and no prefetch or decode thread is left behind
    assert threading.active_count() <= before


def test_a_failing_predictor_stops_the_prefetch_thread(video):
    class Failing(FrameMeanPredictor):
        def predict(self, frames, layout):
            raise RuntimeError("model failed")

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="model failed"):
        predict_range(video, PREFIX, LAYOUT, 0, 69, Failing(), window=4)
    assert threading.active_count() <= before


def test_cuda_decode_falls_back_to_the_cpu_decoder(video):
    # on a machine without NVDEC (this one) the frames are the CPU decoder's, bit for bit
    cpu = read_frames(video, PREFIX, 0, 40).frames
    hw = np.concatenate([b.frames for b in iter_frames(video, PREFIX, 0, 40, decode_device="cuda")])
    np.testing.assert_array_equal(hw, cpu)
    with pytest.raises(ValueError, match="decode_device"):
        list(iter_frames(video, PREFIX, 0, 4, decode_device="vulkan"))


def test_decode_workers_default_to_the_cpus_of_this_process():
    assert default_decode_workers() == len(os.sched_getaffinity(0))


def test_model_predictor_through_the_staged_path(video):
    # the users' model (fp32) through stage/predict_staged in windows of 5 frames equals one predict call
    torch = pytest.importorskip("torch")
    import io

    from PIL import Image

    from modal_gpu.inference_options import InferenceOptions
    from modal_gpu.model import build_model, randomize_for_tests_
    from modal_gpu.model_predictor import ModelPredictor

    torch.manual_seed(0)
    png = io.BytesIO()
    Image.fromarray(synth(0, 96, 20)).save(png, format="PNG")
    layout = LayoutConfig(96, 20, 0, 0, 96, 20, "center", png.getvalue())
    p = ModelPredictor(randomize_for_tests_(build_model(), seed=1), model_version="m_00000000", device="cpu",
                       batch_size=4, options=InferenceOptions(precision="fp32"))
    fwd, bwd = predict_range(video, PREFIX, layout, 10, 19, p, window=5)
    want_f, want_b = p.predict(read_frames(video, PREFIX, 10, 19).frames, layout)
    np.testing.assert_allclose(fwd, want_f, atol=1e-5)
    np.testing.assert_allclose(bwd, want_b, atol=1e-5)
