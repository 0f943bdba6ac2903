"""Ingest a source video into the frame store: the job upstream's cropping service does.

Decode with PyAV as ``ffmpeg -vf fps=10`` does (:mod:`boundaries.frames.decode`: display rotation,
timestamps, damaged packets) and crop in pixels of the upright frame -> :class:`ChunkWriter`
(COMPAT.md §2) -> ``layout.db`` (§3) with an OCR prior from :mod:`boundaries.frames.ocr_prior`.

Versioned, atomic writes: every ingest writes under a fresh prefix
(:func:`boundaries.frames.keys.ingest_prefix`), never into the chunks of a live version; its
``layout.db`` is written last, inside that prefix; then ``publish`` (e.g. the registry switch of
:func:`boundaries.registry.frame_versions.publish_version`) makes it visible in one step. When
anything fails before ``publish`` returns — decoding, encoding, an upload, the registry, Ctrl-C —
every object the ingest wrote is deleted and the previous version is untouched. A process killed
outright leaves an unreferenced prefix that ``boundaries store orphans --delete`` removes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import TYPE_CHECKING

import structlog

from boundaries.frames.decode import MAX_DAMAGED_PACKETS, SourceDecoder, crop_pixels, decode_resampled
from boundaries.frames.keys import INGEST_LAYOUT_DB, ingest_prefix, new_ingest_id
from boundaries.frames.layoutdb import build_layout_db
from boundaries.frames.ocr_prior import OcrPriorAccumulator
from boundaries.frames.orphans import delete_prefix
from boundaries.frames.writer import ChunkWriter
from boundaries.layout_config import ANCHORS, LayoutConfig
from boundaries.storage.base import ObjectStore

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = ["IngestResult", "TooFewFramesError", "crop_pixels", "decode_resampled", "ingest_video"]

log = structlog.get_logger(__name__)

#: A video must give at least this many frames at 10 fps: the model works on frame pairs.
MIN_FRAMES = 2


class TooFewFramesError(ValueError):
    """The source gives fewer than :data:`MIN_FRAMES` frames after resampling (``frames``: how many)."""

    def __init__(self, path: str, frames: int, fps: float):
        super().__init__(f"{path}: gives {frames} frame{'s' if frames != 1 else ''} at {fps:g} fps; "
                         f"at least {MIN_FRAMES} frames are needed (one frame pair)")
        self.path, self.frames = path, frames


#: A source that decodes to fewer than this share of the frames its container's duration promises is
#: ingested with a ``source.ended_early`` warning (a file cut short keeps its header's duration).
ENDED_EARLY_SHARE = 0.9


def ended_early(frames: int, expected: int | None) -> bool:
    """Whether ``frames`` decoded falls short of ``expected`` (None: unknown) by more than 10 % and 2 frames."""
    return expected is not None and frames < ENDED_EARLY_SHARE * expected and expected - frames > 2


@dataclass
class IngestResult:
    """``total_frames``/``chunk_count`` as stored; crop size in pixels; keys in the store;
    ``damaged_packets``: source packets skipped (their times in seconds in ``damaged_at``);
    ``expected_frames``: the count the container's duration promises at the ingest rate (None: unknown),
    well above ``total_frames`` for a file cut short (logged as ``source.ended_early``)."""

    total_frames: int
    chunk_count: int
    crop_width: int
    crop_height: int
    frames_prefix: str
    layout_db_key: str
    layout: LayoutConfig
    damaged_packets: int = 0
    damaged_at: list[float] = field(default_factory=list)
    expected_frames: int | None = None


def ingest_video(path, crop: tuple[float, float, float, float], anchor: str, store: ObjectStore,
                 settings: Settings, tenant_id: str, video_id: str, version: int = 1, *, fps: float = 10.0,
                 max_frames: int | None = None,
                 progress: Callable[[int], None] | None = None,
                 expected: Callable[[int | None], None] | None = None,
                 publish: Callable[[IngestResult], object] | None = None,
                 max_damaged_packets: int = MAX_DAMAGED_PACKETS,
                 encode_workers: int | None = None) -> IngestResult:
    """Crop ``path`` into chunks under a fresh prefix of ``settings.frames_prefix_template`` (see the
    module doc), write ``{prefix}layout.db``, then call ``publish(result)``; returns the result.

    ``crop``: fractions (left, top, right, bottom) of the upright frame; ``anchor``: left/center/right.
    ``progress(n)``: frames written so far, every 50 frames and at the end; ``expected(n)``: the
    frame count estimated from the container's duration (None when unknown), once before the first.
    The OCR image is an edge-frequency text prior (see :mod:`boundaries.frames.ocr_prior`).

    Raises (nothing stays in the store, nothing is published): ValueError for a bad crop or anchor;
    :class:`TooFewFramesError` for a source with fewer than 2 frames at ``fps`` (checked before
    anything is written); :class:`boundaries.frames.decode.DamagedSourceError` past
    ``max_damaged_packets``; InvalidId for bad ids; av.FFmpegError for an unreadable file; and
    whatever ``publish`` or the store raise.
    """
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    prefix = ingest_prefix(settings.frames_prefix_template, tenant_id, video_id, version, new_ingest_id())
    db_key = prefix + INGEST_LAYOUT_DB
    decoder = SourceDecoder(path, fps, crop=crop, max_damaged_packets=max_damaged_packets, pixel_format="yuv420p")
    frames = iter(decoder)
    if max_frames is not None:
        frames = islice(frames, max_frames)
    head = list(islice(frames, MIN_FRAMES))
    if len(head) < MIN_FRAMES:
        raise TooFewFramesError(str(path), len(head), fps)
    if expected is not None:
        expected(decoder.expected_frames)
    px = decoder.crop_px
    width, height = px[2] - px[0], px[3] - px[1]
    prior = OcrPriorAccumulator(width, height)
    try:
        with ChunkWriter(store, prefix, width, height, encode_workers=encode_workers) as writer:
            n = 0
            for cropped in chain(head, frames):
                writer.write(cropped)
                prior.add(cropped)
                n += 1
                if progress is not None and n % 50 == 0:
                    progress(n)
            total = writer.close()
        if progress is not None:
            progress(total)
        cfg = LayoutConfig(decoder.width, decoder.height, *px, anchor, prior.png())
        store.put_bytes(db_key, build_layout_db(cfg))  # last: a prefix with layout.db is complete
        result = IngestResult(total, writer.chunks_written, width, height, prefix, db_key, cfg,
                              decoder.damaged_packets, list(decoder.damaged_at), decoder.expected_frames)
        if max_frames is None and ended_early(total, decoder.expected_frames):
            log.warning("source.ended_early", file=str(path), frames=total,
                        expected_frames=decoder.expected_frames,
                        hint="the container's duration promises more frames: a truncated or cut file?")
        if publish is not None:
            publish(result)
    except BaseException as failure:
        try:
            removed = delete_prefix(store, prefix)
        except Exception as e:  # the store is failing too: the prefix stays for the orphan sweep
            log.error("video.ingest_cleanup_failed", video_id=video_id, prefix=prefix, error=str(e)[:300],
                      cause=type(failure).__name__)
        else:
            log.warning("video.ingest_failed", video_id=video_id, prefix=prefix, objects_removed=removed,
                        cause=type(failure).__name__)
        raise
    log.info("video.ingested", video_id=video_id, frames=total, chunks=result.chunk_count, crop=px,
             prefix=prefix, damaged_packets=decoder.damaged_packets, rotation=decoder.rotation)
    return result
