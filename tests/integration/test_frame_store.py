"""Frame store end to end: writer -> object store -> discovery -> range reads (COMPAT.md §1-3)."""

from __future__ import annotations

import io
import threading
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest

from boundaries.errors import CorruptChunkError, MissingFramesError
from boundaries.frames.keys import chunk_key, frames_prefix
from boundaries.frames.layout import ChunkRef, all_chunks, chunk_frames, chunks_covering
from boundaries.frames.layoutdb import parse_layout_db
from boundaries.frames.reader import discover_chunks, iter_frames, read_frames
from boundaries.frames.writer import ChunkWriter, encode_chunk
from boundaries.ingest import decode_resampled, ingest_video
from boundaries.storage.local import LocalStore
from boundaries.storage.s3 import S3Store
from config.settings import Settings

pytestmark = pytest.mark.integration


def synth(i: int, w: int, h: int) -> np.ndarray:
    """A frame whose content identifies its index: grey level and a bar position."""
    f = np.full((h, w, 3), 30 + 20 * ((i * 3) % 10), np.uint8)
    x = (i * 7) % max(1, w - 12)
    f[:, x:x + 12] = 255 if f[0, 0, 0] < 128 else 0
    return f


def frame_id(f: np.ndarray, w: int) -> int:
    """(bar position, grey step) of a synth frame: identifies its index (robust to VP9)."""
    col = f[:, :, 0].astype(int).mean(0)
    return int(np.argmax(np.abs(col - np.median(col)) > 60)), int(round((np.median(col) - 30) / 20))


class RecordingStore(LocalStore):
    """A real LocalStore that also records which keys were downloaded."""

    def __init__(self, root):
        super().__init__(root)
        self.gets: list[str] = []
        self._lock = threading.Lock()

    def get_bytes(self, key: str) -> bytes:
        with self._lock:
            self.gets.append(key)
        return super().get_bytes(key)


@pytest.fixture(scope="module")
def odd_video(tmp_path_factory):
    """203 frames of 402x27 (odd size, every level ends in a short chunk)."""
    store = RecordingStore(tmp_path_factory.mktemp("fs"))
    w, h, n = 402, 27, 203
    with ChunkWriter(store, "t/v/cropped_frames_v1/", w, h) as wr:
        for i in range(n):
            wr.write(synth(i, w, h))
    return store, "t/v/cropped_frames_v1/", w, h, n


def test_writer_layout_and_chunk_format(odd_video):
    store, prefix, w, h, n = odd_video
    # Then exactly the chunks of the layout exist, each with its frame count, in VP9/WebM at 10 fps
    assert sorted(store.list_keys(prefix)) == sorted(chunk_key(prefix, c) for c in all_chunks(n))
    for c in all_chunks(n):
        with av.open(io.BytesIO(store.get_bytes(chunk_key(prefix, c)))) as cont:
            s = cont.streams.video[0]
            assert cont.format.name.startswith("matroska,webm") and s.codec_context.name == "vp9"
            assert (s.width, s.height, s.codec_context.pix_fmt) == (w, h, "yuv420p")
            assert s.average_rate == 10 or s.guessed_rate == 10
            assert sum(1 for _ in cont.decode(s)) == len(chunk_frames(c, n))


def test_round_trip_odd_size_every_frame(odd_video):
    store, prefix, w, h, n = odd_video
    index = discover_chunks(store, prefix)
    assert index.total_frames(store) == n and index.missing_chunks(n) == []
    batch = read_frames(store, prefix, 0, n - 1, index=index)
    assert batch.frames.shape == (n, h, w, 3) and batch.frames.dtype == np.uint8
    assert batch.indices.tolist() == list(range(n))
    for i in range(n):
        assert frame_id(batch.frames[i], w) == frame_id(synth(i, w, h), w), i
        assert np.abs(batch.frames[i].astype(int) - synth(i, w, h)).mean() < 4


@pytest.mark.parametrize("first,last", [(0, 0), (5, 5), (42, 43), (17, 190), (160, 202)])
def test_range_reads_download_only_covering_chunks(odd_video, first, last):
    store, prefix, w, h, n = odd_video
    index = discover_chunks(store, prefix)
    store.gets.clear()
    batch = read_frames(store, prefix, first, last, index=index)
    assert sorted(store.gets) == sorted(chunk_key(prefix, c) for c in chunks_covering(first, last))
    full = read_frames(store, prefix, 0, n - 1, index=index)
    assert np.array_equal(batch.frames, full.frames[first:last + 1])


def test_iter_frames_windows_are_consecutive_and_exact(odd_video):
    store, prefix, w, h, n = odd_video
    full = read_frames(store, prefix, 0, n - 1)
    batches = list(iter_frames(store, prefix, 3, 200, window=17, max_workers=2))
    assert [len(b.indices) for b in batches] == [17] * 11 + [11]
    idx = np.concatenate([b.indices for b in batches])
    assert idx.tolist() == list(range(3, 201))
    assert np.array_equal(np.concatenate([b.frames for b in batches]), full.frames[3:201])


def test_missing_chunk_lists_missing_frames(tmp_path, odd_video):
    store, prefix, w, h, n = odd_video
    # Given a copy where the writer dropped the last partial modulo_1 chunk (frames >= 171)
    copy = LocalStore(tmp_path)
    for k in store.list_keys(prefix):
        copy.put_bytes(k, store.get_bytes(k))
    tail = max(c for c in all_chunks(n) if c.level == 1)
    copy.delete(chunk_key(prefix, tail))
    index = discover_chunks(copy, prefix)
    # Then the count comes from the other levels (last modulo_4 frame: 200), the gap is reported
    assert index.total_frames(copy) == 201
    assert index.missing_chunks(201) == [tail]
    # And reads name exactly the missing frames of the range (the modulo_1 ones)
    with pytest.raises(MissingFramesError) as e:
        read_frames(copy, prefix, 190, 200, index=index)
    assert e.value.missing == [190, 191, 193, 194, 195, 197, 198, 199]
    assert read_frames(copy, prefix, 192, 192, index=index).indices.tolist() == [192]
    # And frames past the end are missing too (their chunks exist but are short): never a silent gap
    with pytest.raises(MissingFramesError) as e:
        read_frames(store, prefix, 200, 205)
    assert e.value.missing == [203, 204, 205]


def test_short_and_corrupt_chunks(tmp_path):
    store = LocalStore(tmp_path)
    prefix = "p/"
    with ChunkWriter(store, prefix, 32, 16) as wr:
        for i in range(100):
            wr.write(synth(i, 32, 16))
    # Given a modulo_1 chunk re-encoded with only 10 of its 32 frames
    ref = ChunkRef(1, 1)
    short = encode_chunk([synth(i, 32, 16) for i in chunk_frames(ref)[:10]], 32, 16)
    store.put_bytes(chunk_key(prefix, ref), short)
    with pytest.raises(MissingFramesError) as e:
        read_frames(store, prefix, 0, 20)
    assert e.value.missing == [i for i in chunk_frames(ref)[10:] if i <= 20]
    # Given garbage in a chunk
    bad = chunk_key(prefix, ChunkRef(4, 4))
    store.put_bytes(bad, b"\x1aE\xdf\xa3 definitely not webm")
    with pytest.raises(CorruptChunkError, match="modulo_4/chunk_0000000004.webm") as e:
        read_frames(store, prefix, 4, 4)
    assert e.value.key == bad


def test_iter_frames_memory_is_bounded(tmp_path):
    # Given 3000 frames (160x16): the whole range decoded would be ~23 MB
    store = LocalStore(tmp_path)
    w, h, n = 160, 16, 3000
    with ChunkWriter(store, "m/", w, h) as wr:
        for i in range(n):
            wr.write(synth(i, w, h))
    index = discover_chunks(store, "m/")
    whole = n * w * h * 3
    # When iterated in windows of 64
    tracemalloc.start()
    count = 0
    for b in iter_frames(store, "m/", 0, n - 1, window=64, index=index, max_workers=2):
        count += len(b.indices)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Then every frame came through and the peak stays far below the whole range
    assert count == n
    assert peak < whole / 4, (peak, whole)


@pytest.mark.parametrize("template", [
    "{tenant_id}/{video_id}/cropped_frames_v{version}/",
    "{tenant_id}/client/videos/{video_id}/cropped_frames_v{version}/",
])
def test_discovery_paginates_over_s3_both_templates_any_padding(moto_s3, s3_bucket, template):
    # Given > 1000 tiny fake chunk objects (only listing matters), mixed zero padding
    store = S3Store(s3_bucket, endpoint_url=moto_s3.endpoint_url)
    prefix = frames_prefix(template, str(uuid.uuid4()), str(uuid.uuid4()), 3)
    refs = all_chunks(33_000)
    assert len(refs) > 1000
    keys = [f"{prefix}modulo_{c.level}/chunk_{c.start}.webm" if j % 3 == 0 else chunk_key(prefix, c)
            for j, c in enumerate(refs)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put_bytes(k, b"x"), keys))
    store.put_bytes(f"{prefix}modulo_1/README.txt", b"x")
    store.put_bytes(f"{prefix}modulo_1/chunk_0000000002.webm", b"x")  # not a chunk start: ignored
    # Then every chunk is indexed from the paginated listing
    index = discover_chunks(store, prefix)
    assert set(index.keys) == set(refs)
    assert index.keys[refs[0]].startswith(prefix)


def test_real_chunks_over_s3(moto_s3, s3_bucket):
    store = S3Store(s3_bucket, endpoint_url=moto_s3.endpoint_url)
    with ChunkWriter(store, "s3v/", 64, 20) as wr:
        for i in range(70):
            wr.write(synth(i, 64, 20))
    batch = read_frames(store, "s3v/", 0, 69, max_workers=4)
    assert [frame_id(f, 64) for f in batch.frames] == [frame_id(synth(i, 64, 20), 64) for i in range(70)]


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((a.astype(np.float64) - b) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-9))


@pytest.mark.parametrize("rel,crop,frames", [
    ("derived/popeye_burn10/T00-1_p3_srtburn_10fps.mp4", (0.05, 0.78, 0.95, 0.99), 600),
    ("rapidvideocr/1.mp4", (0.0, 0.72, 1.0, 0.98), 127),
])
def test_real_video_round_trip(real_data, tmp_path, tenant_id, video_id, rel, crop, frames):
    # Given a real video ingested at 10 fps with a caption crop
    store = LocalStore(tmp_path)
    settings = Settings()
    res = ingest_video(real_data / rel, crop, "center", store, settings, tenant_id, video_id)
    # Then every frame reads back: same count, crops within 35 dB mean / 30 dB min PSNR of the source
    assert res.total_frames == frames
    index = discover_chunks(store, res.frames_prefix)
    assert index.total_frames(store) == frames and index.missing_chunks(frames) == []
    got = read_frames(store, res.frames_prefix, 0, frames - 1, index=index)
    cfg = res.layout
    src = np.stack([f[cfg.crop_top:cfg.crop_bottom, cfg.crop_left:cfg.crop_right]
                    for f in decode_resampled(real_data / rel)])
    assert got.frames.shape == src.shape == (frames, res.crop_height, res.crop_width, 3)
    p = psnr(got.frames, src)
    assert p.mean() >= 35.0 and p.min() >= 30.0, (p.mean(), p.min())
    # And layout.db holds the pixel crop and a crop-sized OCR prior PNG
    parsed = parse_layout_db(store.get_bytes(res.layout_db_key))
    assert parsed == cfg
    from PIL import Image

    img = Image.open(io.BytesIO(parsed.ocr_visualization_png))
    assert img.size == (res.crop_width, res.crop_height)


def test_ingest_rejects_bad_crop_and_anchor(real_data, tmp_path, tenant_id, video_id):
    from boundaries.ingest import crop_pixels

    assert crop_pixels((0.05, 0.78, 0.95, 0.99), 720, 538) == (36, 420, 684, 533)
    with pytest.raises(ValueError, match="crop must be fractions"):
        crop_pixels((0.5, 0.1, 0.4, 0.9), 720, 538)
    with pytest.raises(ValueError, match="empty in pixels"):
        crop_pixels((0.5, 0.1, 0.5004, 0.9), 720, 538)
    video = real_data / "rapidvideocr/2.mp4"
    with pytest.raises(ValueError, match="anchor must be one of"):
        ingest_video(video, (0, 0.8, 1, 1), "middle", LocalStore(tmp_path), Settings(), tenant_id, video_id)
    # max_frames stops early and the stored count matches
    res = ingest_video(video, (0.1, 0.8, 0.9, 0.97), "left", LocalStore(tmp_path), Settings(), tenant_id,
                       video_id, max_frames=12)
    assert res.total_frames == 12 and discover_chunks(LocalStore(tmp_path), res.frames_prefix).total_frames(
        LocalStore(tmp_path)) == 12
