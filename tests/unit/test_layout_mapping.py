"""The modulo-16/4/1 chunk mapping (COMPAT.md §2) against a brute-force model of the layout."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boundaries.frames.keys import chunk_key, parse_chunk_key
from boundaries.frames.layout import (
    CHUNK_FRAMES,
    ChunkRef,
    all_chunks,
    chunk_frames,
    chunks_covering,
    count_in_level,
    frame_at_rank,
    level_chunks,
    level_of,
    locate,
    rank_in_level,
)


def brute_layout(total: int) -> dict[ChunkRef, list[int]]:
    """Straight from the spec text: per level, frames in increasing order, cut every 32."""
    out: dict[ChunkRef, list[int]] = {}
    for lvl in (16, 4, 1):
        seq = [i for i in range(total) if (16 if i % 16 == 0 else 4 if i % 4 == 0 else 1) == lvl]
        for k in range(0, len(seq), CHUNK_FRAMES):
            part = seq[k:k + CHUNK_FRAMES]
            out[ChunkRef(lvl, part[0])] = part
    return out


def test_compat_examples():
    # Given the examples of COMPAT.md §2
    refs = all_chunks(2000)
    per_level = {lvl: sorted(c.start for c in refs if c.level == lvl) for lvl in (16, 4, 1)}
    # Then first and second chunk starts match
    assert per_level[16][:2] == [0, 512]
    assert per_level[4][:2] == [4, 172]
    assert per_level[1][:2] == [1, 43]
    assert chunk_key("p/", ChunkRef(16, 0)) == "p/modulo_16/chunk_0000000000.webm"
    assert chunk_key("p/", ChunkRef(4, 4)) == "p/modulo_4/chunk_0000000004.webm"
    assert chunk_key("p/", ChunkRef(1, 1)) == "p/modulo_1/chunk_0000000001.webm"
    assert locate(43).chunk_start == 43 and locate(43).offset == 0
    assert locate(42).chunk_start == 1 and locate(42).offset == 31


@settings(max_examples=60, deadline=None)
@given(total=st.integers(min_value=1, max_value=3000))
def test_layout_matches_brute_force_including_short_tails(total):
    # Given the brute-force layout of a video of `total` frames
    brute = brute_layout(total)
    # Then the chunk list, each chunk's frames (tail cut short) and per-level counts agree
    assert sorted(all_chunks(total)) == sorted(brute)
    for ref, frames in brute.items():
        assert chunk_frames(ref, total) == frames
    for lvl in (16, 4, 1):
        assert count_in_level(lvl, total) == sum(len(f) for r, f in brute.items() if r.level == lvl)
        assert level_chunks(lvl, total) == sorted(r for r in brute if r.level == lvl)
    # And every frame is stored exactly once, at the location locate() gives
    seen = {}
    for ref, frames in brute.items():
        for off, i in enumerate(frames):
            assert i not in seen
            seen[i] = (ref.level, ref.start, off)
    assert sorted(seen) == list(range(total))
    for i, (lvl, start, off) in seen.items():
        loc = locate(i)
        assert (loc.level, loc.chunk_start, loc.offset) == (lvl, start, off)


@settings(max_examples=200, deadline=None)
@given(i=st.integers(min_value=0, max_value=10**9))
def test_rank_inverse(i):
    assert frame_at_rank(level_of(i), rank_in_level(i)) == i


@settings(max_examples=150, deadline=None)
@given(first=st.integers(min_value=0, max_value=2500), span=st.integers(min_value=0, max_value=700))
def test_chunks_covering_is_exactly_the_minimal_set(first, span):
    # Given a range and the brute-force layout of a video long enough to hold it
    last = first + span
    brute = brute_layout(last + 1)
    # Then chunks_covering returns exactly the chunks holding a frame of the range: each holds a
    # needed frame (every frame lives in one chunk, so none can be dropped) and none is missing
    needed = sorted(r for r, frames in brute.items() if any(first <= i <= last for i in frames))
    assert chunks_covering(first, last) == needed


def test_short_tail_chunks_by_hand():
    # 50 frames: modulo_16 {0,16,32,48}; modulo_4 {4,8,12,20,...,44}; modulo_1 splits at frame 43
    assert chunk_frames(ChunkRef(16, 0), 50) == [0, 16, 32, 48]
    assert chunk_frames(ChunkRef(4, 4), 50) == [4, 8, 12, 20, 24, 28, 36, 40, 44]
    assert chunk_frames(ChunkRef(1, 43), 50) == [43, 45, 46, 47, 49]
    assert len(chunk_frames(ChunkRef(1, 1), 50)) == 32


@pytest.mark.parametrize("key,ref", [
    ("t/v/cropped_frames_v1/modulo_16/chunk_0000000512.webm", ChunkRef(16, 512)),
    ("t/client/videos/v/cropped_frames_v2/modulo_4/chunk_172.webm", ChunkRef(4, 172)),
    ("x/modulo_1/chunk_00043.webm", ChunkRef(1, 43)),
    ("x/modulo_2/chunk_0000000000.webm", None),
    ("x/modulo_1/chunk_43.webm.tmp", None),
])
def test_parse_chunk_key_any_padding(key, ref):
    assert parse_chunk_key(key) == ref


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="first"):
        chunks_covering(5, 4)
    with pytest.raises(ValueError, match="not a chunk start"):
        chunk_frames(ChunkRef(1, 2))
    with pytest.raises(ValueError, match="frame index"):
        level_of(-1)
