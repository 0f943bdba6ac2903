"""Ingest a source video into the frame store: the job upstream's cropping service does.

Decode with PyAV -> resample to 10 fps with ffmpeg's ``fps`` filter in a PyAV filter graph (so
frame k is ``ffmpeg -vf fps=10`` frame k, the frame numbering of the ground-truth labels) ->
convert to RGB -> crop in pixels -> :class:`ChunkWriter` (COMPAT.md §2) -> ``layout.db`` (§3)
with an OCR prior from :mod:`boundaries.frames.ocr_prior`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from boundaries.frames.keys import frames_prefix, layout_db_key
from boundaries.frames.layoutdb import build_layout_db
from boundaries.frames.ocr_prior import OcrPriorAccumulator
from boundaries.frames.writer import ChunkWriter
from boundaries.layout_config import ANCHORS, LayoutConfig
from boundaries.storage.base import ObjectStore

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np

    from config.settings import Settings

log = structlog.get_logger(__name__)


@dataclass
class IngestResult:
    """``total_frames``/``chunk_count`` as stored; crop size in pixels; keys in the store."""

    total_frames: int
    chunk_count: int
    crop_width: int
    crop_height: int
    frames_prefix: str
    layout_db_key: str
    layout: LayoutConfig


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


def decode_resampled(path: str | Path, fps: float = 10.0) -> Iterator[np.ndarray]:
    """Frames of ``path``'s first video stream resampled by ffmpeg's ``fps={fps}`` filter, as uint8
    ``(H, W, 3)`` RGB, in order. Timestamps are shifted by the container's start time, as the
    ffmpeg command line does. Raises av.FFmpegError for unreadable input."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        offset = 0
        if container.start_time not in (None, 0) and stream.time_base:
            offset = round(Fraction(container.start_time, 1_000_000) / stream.time_base)
        graph = av.filter.Graph()
        src = graph.add_buffer(template=stream)
        rate = graph.add("fps", f"fps={fps:g}")
        sink = graph.add("buffersink")
        src.link_to(rate)
        rate.link_to(sink)
        graph.configure()

        def drain():
            while True:
                try:
                    out = graph.vpull()
                except (av.BlockingIOError, av.EOFError):
                    return
                yield out.to_ndarray(format="rgb24")

        for frame in container.decode(stream):
            if frame.pts is not None and offset:
                frame.pts -= offset
            graph.vpush(frame)
            yield from drain()
        graph.vpush(None)
        yield from drain()


def ingest_video(path, crop: tuple[float, float, float, float], anchor: str, store: ObjectStore,
                 settings: Settings, tenant_id: str, video_id: str, version: int = 1, *, fps: float = 10.0,
                 max_frames: int | None = None,
                 progress: Callable[[int], None] | None = None) -> IngestResult:
    """Crop ``path`` into chunks under ``settings.frames_prefix_template`` and write ``layout.db`` at
    ``settings.layout_db_key_template``. Existing objects under the version's prefix are deleted
    first, so a re-ingest never leaves stale chunks. ``progress(n)`` is called every 100 frames.

    ``crop``: fractions (left, top, right, bottom); ``anchor``: left/center/right.
    The OCR image is an edge-frequency text prior (see :mod:`boundaries.frames.ocr_prior`).
    Raises ValueError for a bad crop, anchor or a video without frames; InvalidId for bad ids.
    """
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    prefix = frames_prefix(settings.frames_prefix_template, tenant_id, video_id, version)
    db_key = layout_db_key(settings.layout_db_key_template, tenant_id, video_id)
    stale = list(store.list_keys(prefix))
    for key in stale:
        store.delete(key)
    writer: ChunkWriter | None = None
    prior: OcrPriorAccumulator | None = None
    px = (0, 0, 0, 0)
    full = (0, 0)
    n = 0
    for rgb in decode_resampled(path, fps):
        if writer is None:
            full = (rgb.shape[1], rgb.shape[0])
            px = crop_pixels(crop, *full)
            writer = ChunkWriter(store, prefix, px[2] - px[0], px[3] - px[1])
            prior = OcrPriorAccumulator(px[2] - px[0], px[3] - px[1])
        cropped = rgb[px[1]:px[3], px[0]:px[2]]
        writer.write(cropped)
        prior.add(cropped)
        n += 1
        if progress is not None and n % 100 == 0:
            progress(n)
        if max_frames is not None and n >= max_frames:
            break
    if writer is None:
        raise ValueError(f"video {str(path)!r} has no decodable video frames")
    total = writer.close()
    cfg = LayoutConfig(full[0], full[1], *px, anchor, prior.png())
    store.put_bytes(db_key, build_layout_db(cfg))
    log.info("video.ingested", video_id=video_id, frames=total, chunks=writer.chunks_written,
             crop=px, stale_deleted=len(stale))
    return IngestResult(total, writer.chunks_written, px[2] - px[0], px[3] - px[1], prefix, db_key, cfg)
