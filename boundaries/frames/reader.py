"""Reading cropped frames back from modulo-16/4/1 VP9 chunks (COMPAT.md §1-2).

* :func:`discover_chunks` lists one prefix (the store paginates) and parses
  ``modulo_{16,4,1}/chunk_(\\d+).webm`` with any zero padding.
* :func:`iter_frames` yields consecutive windows of a frame range. It downloads and decodes only
  the chunks of :func:`boundaries.frames.layout.chunks_covering` the range, each chunk once,
  sequentially from its first frame up to the last frame needed (never a seek per frame), in
  ``max_workers`` threads (default :func:`default_decode_workers`: one per CPU this process may run
  on; PyAV releases the GIL while decoding, so threads scale with cores) with a lookahead of
  ``max_workers`` chunks. ``decode_device="cuda"`` decodes with NVDEC through PyAV's hwaccel where
  the PyAV build and the machine have it, else (logged once) on the CPU. A decoded chunk is dropped
  once the window passes its last frame, so memory is bounded by roughly
  ``window + (3 + max_workers) * 32`` frames whatever the range length.
* Absent chunks and chunks shorter than their frames require raise ``MissingFramesError`` with
  the missing indices; an undecodable chunk raises ``CorruptChunkError`` naming its key.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import structlog

from boundaries.errors import CorruptChunkError, MissingFramesError, ObjectNotFound
from boundaries.frames.layout import (
    CHUNK_FRAMES,
    LEVELS,
    ChunkRef,
    chunks_covering,
    frame_at_rank,
    level_of,
    rank_in_level,
)
from boundaries.storage.base import ObjectStore

log = structlog.get_logger(__name__)

_REL_KEY_RE = re.compile(r"^modulo_(16|4|1)/chunk_(\d+)\.webm$")


def default_decode_workers() -> int:
    """Decode threads when none are configured: the CPUs this process may run on
    (``os.sched_getaffinity``, which honours container CPU sets), else ``os.cpu_count()``, at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_HWACCEL_STATE: dict[str, object] = {}


def _hwaccel(device: str):
    """A PyAV ``HWAccel`` for ``device`` ("cuda"), or None (CPU decode) when this PyAV build or
    machine has none; the reason is logged once per process."""
    if device == "cpu":
        return None
    if device not in _HWACCEL_STATE:
        try:
            from av.codec.hwaccel import HWAccel, hwdevices_available

            if device not in hwdevices_available():
                raise RuntimeError(f"PyAV hw devices available: {hwdevices_available()}")
            _HWACCEL_STATE[device] = HWAccel(device_type=device, allow_software_fallback=True)
        except Exception as e:  # noqa: BLE001 - any failure means: decode on the CPU
            log.warning("frames.hwaccel_unavailable", device=device, error=str(e)[:300], fallback="cpu")
            _HWACCEL_STATE[device] = None
    return _HWACCEL_STATE[device]


@dataclass
class FrameBatch:
    """``indices``: int64 ``(N,)`` consecutive frame indices; ``frames``: uint8 ``(N, H, W, 3)`` RGB."""

    indices: np.ndarray
    frames: np.ndarray


@dataclass
class ChunkIndex:
    """Result of one paginated listing of a cropped-frames prefix: every chunk found -> its key."""

    prefix: str
    keys: dict[ChunkRef, str]
    _total: int | None = field(default=None, repr=False, compare=False)

    def total_frames(self, store: ObjectStore) -> int:
        """Frame count = 1 + the highest frame index stored. Decodes only the last chunk of each
        level (cached). 0 when the prefix holds no chunks. Gaps below are not checked here: see
        :meth:`missing_chunks`; the reader raises MissingFramesError for them."""
        if self._total is None:
            last = -1
            for lvl in LEVELS:
                refs = [c for c in self.keys if c.level == lvl]
                if refs:
                    ref = max(refs)
                    n = len(_decode(store.get_bytes(self.keys[ref]), self.keys[ref], ref, 10**18))
                    if n:
                        last = max(last, frame_at_rank(lvl, rank_in_level(ref.start) + n - 1))
            self._total = last + 1
        return self._total

    def missing_chunks(self, total_frames: int) -> list[ChunkRef]:
        """Chunks a video of ``total_frames`` frames must have that the listing did not find."""
        from boundaries.frames.layout import all_chunks

        return [c for c in all_chunks(total_frames) if c not in self.keys]


def discover_chunks(store: ObjectStore, prefix: str, *, quiet: bool = False) -> ChunkIndex:
    """List ``prefix`` (paginated by the store) and index its chunk keys; ``frames.discovered`` is logged at
    INFO, at DEBUG when ``quiet`` (a shard re-listing what its job already discovered and logged).

    Keys that are not ``modulo_{16,4,1}/chunk_<digits>.webm`` directly under the prefix, or whose
    number is not a chunk start of that level, are ignored with a warning. When two keys name the
    same chunk (different zero padding), the canonical 10-digit one wins.
    """
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    keys: dict[ChunkRef, str] = {}
    for key in store.list_keys(prefix):
        m = _REL_KEY_RE.match(key[len(prefix):])
        if not m:
            continue
        ref = ChunkRef(int(m.group(1)), int(m.group(2)))
        if level_of(ref.start) != ref.level or rank_in_level(ref.start) % CHUNK_FRAMES:
            log.warning("frames.bad_chunk_key", key=key, reason="not a chunk start of its level")
            continue
        if ref in keys:
            log.warning("frames.duplicate_chunk", key=key, other=keys[ref])
            if len(m.group(2)) != 10:
                continue
        keys[ref] = key
    (log.debug if quiet else log.info)("frames.discovered", prefix=prefix, chunks=len(keys))
    return ChunkIndex(prefix, keys)


def _decode(data: bytes, key: str, ref: ChunkRef, upto: int, decode_device: str = "cpu") -> list[np.ndarray]:
    """Decode ``ref`` sequentially from its first frame; stop after frame index ``upto``.
    Returns RGB frames in decode order. Raises CorruptChunkError naming ``key``.

    With ``decode_device="cuda"`` a hardware decode that fails where the CPU decoder succeeds turns
    the hardware decoder off for this process (logged) and the CPU result is returned."""
    import av

    hw = _hwaccel(decode_device)
    if hw is not None:
        try:
            return _decode_with(av, data, key, ref, upto, hw)
        except CorruptChunkError as hw_error:
            frames = _decode_with(av, data, key, ref, upto, None)  # raises if the chunk itself is bad
            log.warning("frames.hwaccel_failed", device=decode_device, error=str(hw_error.__cause__)[:300],
                        fallback="cpu")
            _HWACCEL_STATE[decode_device] = None
            return frames
    return _decode_with(av, data, key, ref, upto, None)


def _decode_with(av, data: bytes, key: str, ref: ChunkRef, upto: int, hw) -> list[np.ndarray]:
    r0 = rank_in_level(ref.start)
    out: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(data), mode="r", **({"hwaccel": hw} if hw is not None else {})) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            for frame in container.decode(stream):
                out.append(frame.to_ndarray(format="rgb24"))
                if frame_at_rank(ref.level, r0 + len(out) - 1) >= upto or len(out) >= CHUNK_FRAMES:
                    break
    except (av.FFmpegError, IndexError, ValueError) as e:
        raise CorruptChunkError(f"chunk {key!r} does not decode: {e}; re-crop this video version",
                                key=key) from e
    if not out and data:
        raise CorruptChunkError(f"chunk {key!r} holds no video frames; re-crop this video version", key=key)
    return out


def _load(store: ObjectStore, key: str, ref: ChunkRef, first: int, last: int,
          decode_device: str = "cpu") -> tuple[np.ndarray, list]:
    """(indices in [first, last] decoded from ``ref``, their frames). Missing data -> fewer frames."""
    try:
        data = store.get_bytes(key)
    except ObjectNotFound:
        return np.empty(0, np.int64), []
    frames = _decode(data, key, ref, last, decode_device)
    r0 = rank_in_level(ref.start)
    idx = np.array([frame_at_rank(ref.level, r0 + k) for k in range(len(frames))], np.int64)
    keep = (idx >= first) & (idx <= last)
    return idx[keep], [f for f, k in zip(frames, keep, strict=True) if k]


def _wanted(ref: ChunkRef, first: int, last: int) -> list[int]:
    r0 = rank_in_level(ref.start)
    out = []
    for k in range(CHUNK_FRAMES):
        i = frame_at_rank(ref.level, r0 + k)
        if i > last:
            break
        if i >= first:
            out.append(i)
    return out


def iter_frames(store: ObjectStore, prefix: str, first: int, last: int, *, window: int = 256,
                index: ChunkIndex | None = None, max_workers: int | None = None,
                decode_device: str = "cpu", overlap: int = 0) -> Iterator[FrameBatch]:
    """Consecutive batches of at most ``window`` frames covering ``[first, last]`` (inclusive), in
    order. ``max_workers``: decode threads (None: :func:`default_decode_workers`); ``decode_device``:
    ``cpu`` or ``cuda`` (NVDEC when available, else CPU); ``overlap``: each batch after the first also
    starts with the previous batch's last ``overlap`` frames (a pair predictor needs 1: the pair across
    the seam), assembled in place instead of concatenated by the caller. Raises MissingFramesError (before decoding
    when chunks are absent from the listing), CorruptChunkError, ValueError for a bad range or device."""
    if not 0 <= overlap < window:
        raise ValueError(f"need 0 <= overlap < window, got overlap={overlap} window={window}")
    if decode_device not in ("cpu", "cuda"):
        raise ValueError(f"decode_device must be 'cpu' or 'cuda', got {decode_device!r}")
    max_workers = default_decode_workers() if max_workers is None else max_workers
    if first < 0 or last < first or window < 1:
        raise ValueError(f"need 0 <= first <= last and window >= 1, got first={first} last={last} "
                         f"window={window}")
    index = index if index is not None else discover_chunks(store, prefix, quiet=True)
    refs = chunks_covering(first, last)
    wanted = {r: _wanted(r, first, last) for r in refs}
    absent = sorted(i for r in refs if r not in index.keys for i in wanted[r])
    if absent:
        raise MissingFramesError(
            f"{len(absent)} frames of [{first}, {last}] are in chunks absent under {index.prefix!r}: "
            f"{_summary(absent)}; re-crop this video version", missing=absent)
    refs.sort(key=lambda r: wanted[r][0])  # order of first need
    pool = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="chunk-read")
    pending: dict[ChunkRef, Future] = {}
    cache: dict[ChunkRef, tuple[np.ndarray, list]] = {}
    nxt, lookahead = 0, max(1, max_workers)
    try:
        for a in range(first, last + 1, window):
            b = min(a + window - 1, last)
            while nxt < len(refs) and (wanted[refs[nxt]][0] <= b or len(pending) < lookahead):
                r = refs[nxt]
                pending[r] = pool.submit(_load, store, index.keys[r], r, first, last, decode_device)
                nxt += 1
            short: dict[str, list[int]] = {}
            for r in [r for r in pending if wanted[r][0] <= b]:
                cache[r] = pending.pop(r).result()
                lost = sorted(set(wanted[r]) - set(cache[r][0].tolist()))
                if lost:
                    short[index.keys[r]] = lost
            if short:
                lost = sorted(i for v in short.values() for i in v)
                raise MissingFramesError(
                    f"{len(lost)} frames missing from short chunks {sorted(short)}: {_summary(lost)}; "
                    "re-crop this video version", missing=lost)
            yield _assemble(cache, max(first, a - overlap), b)
            keep_from = b - overlap  # frames <= keep_from are never needed again
            for r in list(cache):  # drop what was yielded: whole chunks, or their consumed frames
                idx, frames = cache[r]
                keep = idx > keep_from
                if wanted[r][-1] <= keep_from:
                    del cache[r]
                elif not keep.all():
                    cache[r] = (idx[keep], [f for f, k in zip(frames, keep, strict=True) if k])
            while nxt < len(refs) and len(pending) < lookahead:  # prefetch while the caller works
                r = refs[nxt]
                pending[r] = pool.submit(_load, store, index.keys[r], r, first, last, decode_device)
                nxt += 1
    finally:
        for f in pending.values():
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _assemble(cache: dict[ChunkRef, tuple[np.ndarray, list]], a: int, b: int) -> FrameBatch:
    shape = next(fr[0].shape for _, fr in cache.values() if fr)
    out = np.empty((b - a + 1, *shape), np.uint8)
    for idx, frames in cache.values():
        for i, f in zip(idx.tolist(), frames, strict=True):
            if a <= i <= b:
                if f.shape != shape:
                    raise CorruptChunkError(f"frame {i} has shape {f.shape}, others {shape}")
                out[i - a] = f
    return FrameBatch(np.arange(a, b + 1, dtype=np.int64), out)


def read_frames(store: ObjectStore, prefix: str, first: int, last: int, *, index: ChunkIndex | None = None,
                max_workers: int | None = None) -> FrameBatch:
    """Frames ``[first, last]`` (inclusive) as one batch: int64 ``(N,)`` indices, uint8
    ``(N, H, W, 3)`` RGB. Same errors as :func:`iter_frames`."""
    (batch,) = list(iter_frames(store, prefix, first, last, window=last - first + 1, index=index,
                                max_workers=max_workers))
    return batch


def _summary(ids: list[int], limit: int = 20) -> str:
    s = ", ".join(map(str, ids[:limit]))
    return s + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")
