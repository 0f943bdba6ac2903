"""Decoding a source video to 10 fps frames the way ``ffmpeg -i SRC -vf fps=10`` does (FFmpeg 5.1).

Frame k of :class:`SourceDecoder` is frame k of ``ffmpeg -vf fps=10`` (the frame numbering of the
ground-truth labels). What the command line does and this module does too:

- **Display rotation** (the display matrix phones write): the picture is turned upright before
  anything else, with the filters ffmpeg's auto-rotation inserts (``transpose=clock`` for 90°
  clockwise, ``transpose=cclock`` for 90° counter-clockwise, ``hflip,vflip`` for 180°). Sizes and
  crops refer to the upright picture.
- **Timestamps**: the container's start time is subtracted; a frame without a timestamp (raw H.264
  elementary streams, some Matroska files) gets the previous one plus one frame period of the
  stream's frame rate (``guessed_rate``, else ``average_rate``, else 25 fps, ffmpeg's default for
  raw streams), so a stream with no timestamps at all resamples like a constant-rate one.
- **Damaged packets** are skipped (the decoder conceals the missing pictures, ffmpeg's fps filter
  repeats the last good frame), each with a warning naming the file, the time and the count so
  far; past ``max_damaged_packets`` (default :data:`MAX_DAMAGED_PACKETS`) decoding stops with
  :class:`DamagedSourceError` naming the file, the time and the count.

Speed: the crop is applied in the filter graph, before the conversion to RGB, so only the caption
band is converted (the full-frame RGB conversion was the larger half of decoding), by the
graph's own ``format`` filter (the same pixels as ``VideoFrame.to_ndarray``, faster on a crop). The crop is
widened to even coordinates plus a margin and trimmed in numpy, so every returned pixel is the
pixel a full-frame conversion gives (checked by tests/integration/test_ingest_sources.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import structlog

log = structlog.get_logger(__name__)

#: Damaged packets a source may have before its ingest fails. A damaged packet costs at most the
#: pictures up to the next keyframe (concealed, then repeated by the fps filter); 25 of them is
#: already several seconds of wrong captions in a short clip, so more means a broken file.
MAX_DAMAGED_PACKETS = 25

#: Frame rate assumed for a stream that declares none (ffmpeg's default for raw streams).
DEFAULT_RATE = Fraction(25)

_CROP_MARGIN = 4  # pixels kept around the crop before RGB conversion (chroma interpolation reach)


class DamagedSourceError(ValueError):
    """More damaged packets than allowed. ``path``, ``seconds`` (time of the last one), ``count``."""

    def __init__(self, path: str, seconds: float, count: int, limit: int):
        super().__init__(f"{path}: {count} damaged packets (the last at {seconds:.2f} s) exceed the limit of "
                         f"{limit}; the file is broken — re-export or re-upload it")
        self.path, self.seconds, self.count, self.limit = path, seconds, count, limit


def rotation_filters(rotation: float) -> list[tuple[str, str]]:
    """Filters turning a picture upright, as ffmpeg 5.1's auto-rotation (``ffmpeg_filter.c``).

    ``rotation``: PyAV's ``VideoFrame.rotation``, degrees counter-clockwise of the display matrix.
    ffmpeg's ``theta = -rotation`` mod 360: 90 -> ``transpose=clock``, 180 -> ``hflip,vflip``,
    270 -> ``transpose=cclock``; other angles (rare, not square) are ignored with no filter.
    """
    theta = (-round(rotation)) % 360
    if abs(theta - 90) < 1:
        return [("transpose", "clock")]
    if abs(theta - 180) < 1:
        return [("hflip", ""), ("vflip", "")]
    if abs(theta - 270) < 1:
        return [("transpose", "cclock")]
    return []


def crop_pixels(crop: tuple[float, float, float, float], width: int,
                height: int) -> tuple[int, int, int, int]:
    """Fractions (left, top, right, bottom) of the frame -> pixels, ``round(fraction * size)``.
    Raises ValueError naming the crop when it is outside 0-1 or empty after rounding."""
    left, top, right, bottom = (float(v) for v in crop)
    if not (0.0 <= left < right <= 1.0 and 0.0 <= top < bottom <= 1.0):
        raise ValueError("crop must be fractions 0 <= left < right <= 1, 0 <= top < bottom <= 1; "
                         f"got {crop!r}")
    px = (round(left * width), round(top * height), round(right * width), round(bottom * height))
    if px[2] <= px[0] or px[3] <= px[1]:
        raise ValueError(f"crop {crop!r} is empty in pixels of a {width}x{height} frame: {px}")
    return px


class SourceDecoder:
    """Iterate a source video's frames resampled to ``fps``, upright, optionally cropped.

    ``crop``: fractions (left, top, right, bottom) of the upright frame, or None for whole frames.
    Each item is a uint8 ``(H, W, 3)`` RGB array (the crop's size when cropping), or with
    ``pixel_format="yuv420p"`` an ``av.VideoFrame`` in yuv420p holding its own buffer: what the VP9
    encoder takes, with no RGB round trip (the ingest's fast path; luma is cropped exactly, chroma
    at ``floor(x / 2)``, which differs from cropping RGB by ≈ 55 dB PSNR at the crop's edges). After the first
    frame: ``width``/``height`` (upright frame, pixels), ``crop_px`` (pixels, or None),
    ``rotation`` (degrees, PyAV's sign); once iteration has started: ``expected_frames`` (from the
    container's duration, an estimate for progress bars, or None). After iterating: ``damaged_packets`` (count) and
    ``damaged_at`` (seconds of each). ``on_damaged(seconds, count)`` is called for each one.

    Raises ValueError naming the file when it has no video stream, for a bad crop, and
    :class:`DamagedSourceError` past ``max_damaged_packets``; av.FFmpegError for unreadable files.
    """

    def __init__(self, path: str | Path, fps: float = 10.0, *, crop: tuple[float, float, float, float] | None = None,
                 max_damaged_packets: int = MAX_DAMAGED_PACKETS,
                 on_damaged: Callable[[float, int], None] | None = None, pixel_format: str = "rgb24"):
        if pixel_format not in ("rgb24", "yuv420p"):
            raise ValueError(f"pixel_format must be 'rgb24' or 'yuv420p', got {pixel_format!r}")
        self.path, self.fps, self.crop, self.pixel_format = str(path), fps, crop, pixel_format
        self.max_damaged_packets = max_damaged_packets
        self.on_damaged = on_damaged
        self.width = self.height = 0
        self.rotation = 0.0
        self.crop_px: tuple[int, int, int, int] | None = None
        self.damaged_packets = 0
        self.damaged_at: list[float] = []
        self.rate = DEFAULT_RATE
        self.timestamps_filled = 0
        self.expected_frames: int | None = None

    # --- filter graph ---------------------------------------------------------------------------------
    def _graph(self, frame, time_base: Fraction):
        import av

        self.rotation = float(frame.rotation or 0)
        turns = rotation_filters(self.rotation)
        upright = (frame.height, frame.width) if any(n == "transpose" for n, _ in turns) else (frame.width,
                                                                                               frame.height)
        self.width, self.height = upright
        graph = av.filter.Graph()
        nodes = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=time_base)]
        for name, args in turns:
            nodes.append(graph.add(name, args))
        nodes.append(graph.add("fps", f"fps={self.fps:g}"))
        self._trim = None
        if self.crop is not None and self.pixel_format == "yuv420p":
            px = self.crop_px = crop_pixels(self.crop, *upright)
            nodes.append(graph.add("crop", f"w={px[2] - px[0]}:h={px[3] - px[1]}:x={px[0]}:y={px[1]}:exact=1"))
        elif self.crop is not None:
            px = self.crop_px = crop_pixels(self.crop, *upright)
            # widen to even coordinates plus a margin so chroma interpolation sees what it sees in
            # the whole frame; trimmed back to px in numpy after the RGB conversion
            x0 = max(0, (px[0] - _CROP_MARGIN) & ~1)
            y0 = max(0, (px[1] - _CROP_MARGIN) & ~1)
            x1 = min(upright[0], (px[2] + _CROP_MARGIN + 1) & ~1)
            y1 = min(upright[1], (px[3] + _CROP_MARGIN + 1) & ~1)
            if (x0, y0, x1, y1) != (0, 0, *upright):
                nodes.append(graph.add("crop", f"w={x1 - x0}:h={y1 - y0}:x={x0}:y={y0}:exact=1"))
            self._trim = (px[0] - x0, px[1] - y0, px[2] - x0, px[3] - y0)
        # RGB conversion inside the graph: identical pixels to VideoFrame.to_ndarray's, ≈2x faster on crops
        nodes.append(graph.add("format", self.pixel_format))
        if self.pixel_format == "yuv420p":  # own buffers: a cropped frame would pin the whole decoded picture
            nodes.append(graph.add("copy"))
        nodes.append(graph.add("buffersink"))
        for a, b in zip(nodes, nodes[1:], strict=False):
            a.link_to(b)
        graph.configure()
        return graph

    def _pull(self, graph) -> Iterator:
        import av

        while True:
            try:
                out = graph.vpull()
            except (av.BlockingIOError, av.EOFError):
                return
            if self.pixel_format == "yuv420p":
                yield out
                continue
            rgb = out.to_ndarray(format="rgb24")
            if self._trim is not None:
                x0, y0, x1, y1 = self._trim
                rgb = rgb[y0:y1, x0:x1]
            yield rgb

    # --- decoding -------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator:
        import av

        with av.open(self.path) as container:
            if not container.streams.video:
                raise ValueError(f"{self.path}: has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            tb = stream.time_base or Fraction(1, 1_000_000)
            self.rate = Fraction(stream.guessed_rate or stream.average_rate or DEFAULT_RATE)
            step = max(1, round(1 / (self.rate * tb)))
            seconds = (float(stream.duration * tb) if stream.duration
                       else container.duration / 1_000_000 if container.duration else None)
            self.expected_frames = round(seconds * self.fps) if seconds else None
            offset = 0
            if container.start_time not in (None, 0):
                offset = round(Fraction(container.start_time, 1_000_000) / tb)
            graph = None
            last_pts: int | None = None
            n_decoded = 0

            def push(frames) -> Iterator[np.ndarray]:
                nonlocal graph, last_pts, n_decoded
                for frame in frames:
                    pts = frame.pts
                    if pts is None:
                        pts = last_pts + step if last_pts is not None else 0
                        self.timestamps_filled += 1
                    else:
                        pts -= offset
                    frame.pts, frame.time_base = pts, tb
                    last_pts = pts
                    n_decoded += 1
                    if graph is None:
                        graph = self._graph(frame, tb)
                    graph.vpush(frame)
                    yield from self._pull(graph)

            for packet in container.demux(stream):  # ends with an empty packet: flushes the decoder
                try:
                    frames = stream.decode(packet)
                except av.InvalidDataError:
                    self._damaged(packet, tb, offset, last_pts, n_decoded)
                    continue
                except av.FFmpegError as e:  # not a damaged packet: a decoder failure, named with file and time
                    at = float((packet.pts - offset) * tb) if packet.pts is not None else n_decoded / self.rate
                    raise ValueError(f"{self.path}: cannot decode the video at {at:.2f} s: {e}") from e
                yield from push(frames)
            if graph is not None:
                graph.vpush(None)
                yield from self._pull(graph)
        if self.timestamps_filled:
            log.info("source.timestamps_filled", file=self.path, frames=self.timestamps_filled,
                     rate=float(self.rate))
        if self.damaged_packets:
            log.warning("source.damaged_packets_skipped", file=self.path, count=self.damaged_packets,
                        at_s=[round(t, 2) for t in self.damaged_at[:10]])

    def _damaged(self, packet, tb: Fraction, offset: int, last_pts: int | None, n_decoded: int) -> None:
        if packet is not None and packet.pts is not None:
            seconds = float((packet.pts - offset) * tb)
        elif last_pts is not None:
            seconds = float(last_pts * tb)
        else:
            seconds = float(n_decoded / self.rate)
        self.damaged_packets += 1
        self.damaged_at.append(seconds)
        log.warning("source.damaged_packet", file=self.path, at_s=round(seconds, 2), count=self.damaged_packets,
                    limit=self.max_damaged_packets)
        if self.on_damaged is not None:
            self.on_damaged(seconds, self.damaged_packets)
        if self.damaged_packets > self.max_damaged_packets:
            raise DamagedSourceError(self.path, seconds, self.damaged_packets, self.max_damaged_packets)


def decode_resampled(path: str | Path, fps: float = 10.0) -> Iterator[np.ndarray]:
    """Whole upright frames of ``path`` resampled as ``ffmpeg -vf fps={fps}``: uint8 ``(H, W, 3)`` RGB.
    See :class:`SourceDecoder` (rotation, timestamps, damaged packets, errors)."""
    return iter(SourceDecoder(path, fps))
