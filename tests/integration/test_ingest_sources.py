"""Ingest of the video files people really have (../shared/data/faults, README there has the values
``ffmpeg -vf fps=10`` gives): rotated phone clips, streams without timestamps, damaged packets,
videos too short for one frame pair."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from structlog.testing import capture_logs

from boundaries.frames.decode import DamagedSourceError, SourceDecoder
from boundaries.frames.layoutdb import parse_layout_db
from boundaries.frames.reader import discover_chunks, read_frames
from boundaries.ingest import ingest_video
from boundaries.storage.local import LocalStore
from config.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def faults(shared_dir):
    return shared_dir / "data" / "faults"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 10 * np.log10(255.0**2 / max(mse, 1e-9))


def stored(store, res) -> np.ndarray:
    return read_frames(store, res.frames_prefix, 0, res.total_frames - 1).frames


def test_rotated_phone_clip_is_turned_upright_before_cropping(faults, tmp_path, tenant_id, video_id):
    # Given: coded 160x120 with a 90° display matrix; ffmpeg shows it 120 wide x 160 high
    store = LocalStore(tmp_path)
    # When: the bottom half of the (upright) picture is ingested
    res = ingest_video(faults / "rot90.mp4", (0.0, 0.5, 1.0, 1.0), "center", store, Settings(), tenant_id, video_id)
    # Then: 20 frames, layout.db records the upright size and a crop of the upright picture ...
    assert res.total_frames == 20
    layout = parse_layout_db(store.get_bytes(res.layout_db_key))
    assert (layout.frame_width, layout.frame_height) == (120, 160)
    assert (layout.crop_left, layout.crop_top, layout.crop_right, layout.crop_bottom) == (0, 80, 120, 160)
    frames = stored(store, res)
    assert frames.shape == (20, 80, 120, 3)
    # ... and the pixels are the coded picture turned 90° counter-clockwise (what ffmpeg displays)
    with av.open(str(faults / "rot90.mp4")) as c:
        coded = next(c.decode(video=0)).to_ndarray(format="rgb24")
    # (a test pattern of saturated colour edges: rotating 4:2:0 chroma before the RGB conversion and
    # VP9 cost a few dB against rotating RGB; the wrong orientation or half is ≈ 2 dB)
    assert psnr(frames[0], np.rot90(coded, 1)[80:]) >= 20.0
    assert psnr(frames[0], np.rot90(coded, -1)[80:]) < 10.0
    assert psnr(frames[0], np.rot90(coded, 1)[:80]) < 10.0


def test_stream_without_timestamps_resamples_at_its_frame_rate(faults, tmp_path, tenant_id, video_id):
    # Given: a raw H.264 stream, no timestamps on any frame (50 frames at 25 fps)
    store = LocalStore(tmp_path)
    res = ingest_video(faults / "raw.h264", (0.0, 0.0, 1.0, 1.0), "center", store, Settings(), tenant_id, video_id)
    # Then: 2 s at 10 fps, as ffmpeg -vf fps=10
    assert res.total_frames == 20
    assert discover_chunks(store, res.frames_prefix).total_frames(store) == 20


def test_damaged_packet_is_skipped_with_a_warning_naming_file_time_and_count(faults, tmp_path, tenant_id, video_id):
    store = LocalStore(tmp_path)
    path = faults / "corrupt_mid.mp4"
    with capture_logs() as logs:
        res = ingest_video(path, (0.0, 0.0, 1.0, 1.0), "center", store, Settings(), tenant_id, video_id)
    # Then: the frames ffmpeg gives (the damaged pictures concealed / repeated), all stored
    assert res.total_frames == 30
    assert discover_chunks(store, res.frames_prefix).total_frames(store) == 30
    warned = [e for e in logs if e["event"] == "source.damaged_packet"]
    assert warned and res.damaged_packets == len(warned)
    assert all(e["file"] == str(path) and 1.0 < e["at_s"] < 2.0 for e in warned)
    assert [e["count"] for e in warned] == list(range(1, len(warned) + 1))
    summary = [e for e in logs if e["event"] == "source.damaged_packets_skipped"]
    assert summary and summary[0]["count"] == res.damaged_packets and summary[0]["log_level"] == "warning"


def test_damaged_packets_past_the_limit_fail_naming_file_time_and_count(faults, tmp_path, tenant_id, video_id):
    store = LocalStore(tmp_path)
    path = faults / "corrupt_mid.mp4"
    with pytest.raises(DamagedSourceError) as err:
        ingest_video(path, (0.0, 0.0, 1.0, 1.0), "center", store, Settings(), tenant_id, video_id,
                     max_damaged_packets=0)
    msg = str(err.value)
    assert str(path) in msg and "1 damaged packets" in msg and " s)" in msg and "limit of 0" in msg
    assert 1.0 < err.value.seconds < 2.0 and err.value.count == 1
    assert list(store.list_keys("")) == []  # nothing left behind


def _tiny_video(path, frames: int, rate: int) -> None:
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, rate)
            out.mux(s.encode(f))
        out.mux(s.encode(None))


@pytest.mark.parametrize("frames,rate,resampled", [(1, 10, 1), (2, 25, 1)])
def test_video_with_fewer_than_two_frames_is_refused_before_anything_is_written(
        tmp_path, tenant_id, video_id, frames, rate, resampled):
    # Given: a 1-frame video, and a 2-frame 25 fps one that resamples to 1 frame at 10 fps
    src = tmp_path / f"short_{frames}.mp4"
    _tiny_video(src, frames, rate)
    assert sum(1 for _ in SourceDecoder(src)) == resampled
    store = LocalStore(tmp_path / "store")
    published = []
    with pytest.raises(ValueError, match=rf"gives {resampled} frame at 10 fps; at least 2 frames are needed"):
        ingest_video(src, (0.0, 0.0, 1.0, 1.0), "center", store, Settings(), tenant_id, video_id,
                     publish=published.append)
    assert published == [] and list(store.list_keys("")) == []


def test_two_frame_video_at_ten_fps_is_accepted(tmp_path, tenant_id, video_id):
    src = tmp_path / "two.mp4"
    _tiny_video(src, 2, 10)
    res = ingest_video(src, (0.0, 0.0, 1.0, 1.0), "center", LocalStore(tmp_path / "s"), Settings(), tenant_id,
                       video_id)
    assert res.total_frames == 2


@pytest.mark.parametrize("crop", [(0.05, 0.78, 0.95, 0.99), (0.013, 0.701, 0.977, 0.963)])
def test_cropping_before_the_rgb_conversion_gives_the_pixels_of_a_whole_frame_conversion(real_data, crop):
    from itertools import islice

    path = real_data / "derived/popeye_burn10/T00-1_p3_srtburn_10fps.mp4"
    dec = SourceDecoder(path, crop=crop)
    cropped = np.stack(list(islice(dec, 40)))
    x0, y0, x1, y1 = dec.crop_px
    whole = np.stack([f[y0:y1, x0:x1] for f in islice(SourceDecoder(path), 40)])
    assert cropped.shape == whole.shape and np.array_equal(cropped, whole)


def test_a_file_cut_short_is_ingested_with_a_warning_naming_the_frames_missing(real_data, tmp_path, tenant_id,
                                                                               video_id):
    # Given: the popeye clip (600 frames at 10 fps) remuxed with its index first (+faststart), then cut in half
    # (a copy interrupted mid-transfer): the container still says 60 s
    src = real_data / "derived/popeye_burn10/T00-1_p3_srtburn_10fps.mp4"
    whole = tmp_path / "faststart.mp4"
    # a stream copy with the index moved first (what ffmpeg -c copy -movflags +faststart does), by PyAV
    with av.open(str(src)) as i, av.open(str(whole), "w", options={"movflags": "+faststart"}) as o:
        out_stream = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(i.streams.video[0]):
            if packet.dts is None:  # the demuxer's end-of-stream flush packet
                continue
            packet.stream = out_stream
            o.mux(packet)
    assert whole.read_bytes()[:64].find(b"moov") > 0, "the index (moov) is not at the start"
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    store = LocalStore(tmp_path / "store")

    with capture_logs() as logs:
        res = ingest_video(cut, (0.0, 0.0, 1.0, 1.0), "center", store, Settings(), tenant_id, video_id)

    # Then: what decodes is kept, and a warning names the file, the frames found and the frames expected
    assert 2 <= res.total_frames < 500 and res.expected_frames == 600
    warned = [e for e in logs if e["event"] == "source.ended_early"]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"
    assert warned[0]["file"] == str(cut) and warned[0]["frames"] == res.total_frames
    assert warned[0]["expected_frames"] == 600
