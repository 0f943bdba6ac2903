"""Pure mapping between frame indices and the modulo-16/4/1 chunk layout (COMPAT.md §2).

Every frame index i >= 0 is stored exactly once, at level L(i) = 16 if i % 16 == 0, else 4 if
i % 4 == 0, else 1. Each level's frames, in increasing order, are cut into chunks of
``CHUNK_FRAMES`` (32) frames; a chunk is named by its first frame index; a frame's offset in its
chunk is its rank within the level mod 32.

Rank formulas (r = 0-based rank of i within its level's sequence):
    level 16: i = 16k           -> r = k
    level 4:  i = 4m, m % 4 != 0 -> r = m - m // 4 - 1
    level 1:  i % 4 != 0         -> r = i - i // 4 - 1
Inverse of "n-th integer >= 1 not divisible by 4": n + n // 3 + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

CHUNK_FRAMES = 32
LEVELS = (16, 4, 1)


@dataclass(frozen=True, order=True)
class ChunkRef:
    """One chunk: its level (16, 4 or 1) and the frame index of its first frame."""

    level: int
    start: int


@dataclass(frozen=True)
class FrameLocation:
    level: int
    chunk_start: int
    offset: int
    """Position of the frame inside its chunk, 0..31 (decode order)."""


def level_of(i: int) -> int:
    if i < 0:
        raise ValueError(f"frame index must be >= 0, got {i}")
    if i % 16 == 0:
        return 16
    if i % 4 == 0:
        return 4
    return 1


def _nth_not_div4(n: int) -> int:
    return n + n // 3 + 1


def rank_in_level(i: int) -> int:
    """0-based rank of frame ``i`` within its level's increasing sequence."""
    lvl = level_of(i)
    if lvl == 16:
        return i // 16
    if lvl == 4:
        m = i // 4
        return m - m // 4 - 1
    return i - i // 4 - 1


def frame_at_rank(level: int, r: int) -> int:
    """Inverse of :func:`rank_in_level`: the frame index with rank ``r`` in ``level``."""
    if r < 0:
        raise ValueError(f"rank must be >= 0, got {r}")
    if level == 16:
        return 16 * r
    if level == 4:
        return 4 * _nth_not_div4(r)
    if level == 1:
        return _nth_not_div4(r)
    raise ValueError(f"level must be one of {LEVELS}, got {level}")


def count_in_level(level: int, total_frames: int) -> int:
    """How many of the frames 0..total_frames-1 are stored at ``level``."""
    if total_frames <= 0:
        return 0
    n16 = (total_frames + 15) // 16
    n4all = (total_frames + 3) // 4  # multiples of 4 below total_frames
    if level == 16:
        return n16
    if level == 4:
        return n4all - n16
    if level == 1:
        return total_frames - n4all
    raise ValueError(f"level must be one of {LEVELS}, got {level}")


def locate(i: int) -> FrameLocation:
    """Where frame ``i`` is stored."""
    lvl = level_of(i)
    r = rank_in_level(i)
    return FrameLocation(lvl, frame_at_rank(lvl, (r // CHUNK_FRAMES) * CHUNK_FRAMES), r % CHUNK_FRAMES)


def chunk_frames(chunk: ChunkRef, total_frames: int | None = None) -> list[int]:
    """Frame indices held by ``chunk`` in decode order (tail chunk cut at ``total_frames``)."""
    r0 = rank_in_level(chunk.start)
    if level_of(chunk.start) != chunk.level or r0 % CHUNK_FRAMES:
        raise ValueError(f"{chunk} is not a chunk start of level {chunk.level}")
    out = []
    for r in range(r0, r0 + CHUNK_FRAMES):
        i = frame_at_rank(chunk.level, r)
        if total_frames is not None and i >= total_frames:
            break
        out.append(i)
    return out


def level_chunks(level: int, total_frames: int) -> list[ChunkRef]:
    """Every chunk of ``level`` for a video of ``total_frames`` frames."""
    n = count_in_level(level, total_frames)
    return [ChunkRef(level, frame_at_rank(level, r)) for r in range(0, n, CHUNK_FRAMES)]


def all_chunks(total_frames: int) -> list[ChunkRef]:
    return [c for lvl in LEVELS for c in level_chunks(lvl, total_frames)]


def chunks_covering(first: int, last: int) -> list[ChunkRef]:
    """The minimum set of chunks holding every frame in ``[first, last]`` (inclusive), sorted.

    Cost is O(number of chunks), not O(frames): per level, the chunk of the first and of the
    last frame of that level inside the range bound a contiguous run of chunks.
    """
    if first < 0 or last < first:
        raise ValueError(f"need 0 <= first <= last, got first={first} last={last}")
    out: list[ChunkRef] = []
    for lvl in LEVELS:
        lo = _first_at_level_ge(lvl, first)
        hi = _last_at_level_le(lvl, last)
        if lo is None or hi is None or lo > hi:
            continue
        r_lo = rank_in_level(lo) // CHUNK_FRAMES
        r_hi = rank_in_level(hi) // CHUNK_FRAMES
        out.extend(ChunkRef(lvl, frame_at_rank(lvl, c * CHUNK_FRAMES)) for c in range(r_lo, r_hi + 1))
    return sorted(out)


def _first_at_level_ge(level: int, x: int) -> int | None:
    for i in range(x, x + 17):
        if level_of(i) == level:
            return i
    return None


def _last_at_level_le(level: int, x: int) -> int | None:
    for i in range(x, max(-1, x - 17), -1):
        if level_of(i) == level:
            return i
    return None
