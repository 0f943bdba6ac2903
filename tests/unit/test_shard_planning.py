"""Shard planning (boundaries/shards.py): every pair in exactly one shard; the frames and chunks each
shard needs; the shard output format round-trips and rejects anything not exactly right."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boundaries.frames.layout import all_chunks, chunk_frames, chunks_covering
from boundaries.shards import (
    InvalidShardOutput,
    decode_output,
    encode_output,
    plan_shards,
    shard_id,
    shard_pairs_from_settings,
    sized_shard_pairs,
)
from config.settings import Settings

frames_st = st.integers(min_value=2, max_value=250_000)
shard_pairs_st = st.integers(min_value=1, max_value=50_000)


@settings(max_examples=200, deadline=None)
@given(total_frames=frames_st, shard_pairs=shard_pairs_st)
def test_every_pair_is_in_exactly_one_shard(total_frames, shard_pairs):
    shards = plan_shards(total_frames, shard_pairs)
    pairs = total_frames - 1
    # contiguous, in order, non-empty, at most shard_pairs each, covering [0, pairs)
    assert shards[0][0] == 0 and shards[-1][1] == pairs
    assert all(a < b <= a + shard_pairs for a, b in shards)
    assert all(prev[1] == nxt[0] for prev, nxt in zip(shards, shards[1:], strict=False))
    assert len(shards) == -(-pairs // shard_pairs)
    assert sum(b - a for a, b in shards) == pairs


@settings(max_examples=100, deadline=None)
@given(total_frames=st.integers(min_value=2, max_value=3_000), shard_pairs=st.integers(min_value=1, max_value=700))
def test_pair_membership_brute_force(total_frames, shard_pairs):
    owner = np.zeros(total_frames - 1, np.int64)
    for a, b in plan_shards(total_frames, shard_pairs):
        owner[a:b] += 1
    assert np.all(owner == 1)


@settings(max_examples=60, deadline=None)
@given(total_frames=st.integers(min_value=2, max_value=4_000), shard_pairs=st.integers(min_value=1, max_value=900))
def test_frames_and_chunks_needed_per_shard(total_frames, shard_pairs):
    existing = set(all_chunks(total_frames))
    seen_frames: set[int] = set()
    shards = plan_shards(total_frames, shard_pairs)
    for a, b in shards:
        # a shard of pairs [a, b) needs exactly frames a..b (both ends of every pair)
        needed = {f for p in range(a, b) for f in (p, p + 1)}
        assert needed == set(range(a, b + 1))
        seen_frames |= needed
        # it downloads only existing chunks that hold at least one needed frame, and they hold all of them
        chunks = chunks_covering(a, b)
        assert set(chunks) <= existing
        held = [set(chunk_frames(c, total_frames)) for c in chunks]
        assert all(h & needed for h in held)
        assert needed <= set().union(*held)
    assert seen_frames == set(range(total_frames))
    # neighbouring shards share exactly the seam frame
    for (a1, b), (a2, b2) in zip(shards, shards[1:], strict=False):
        assert set(range(a1, b + 1)) & set(range(a2, b2 + 1)) == {b}


@given(a=st.integers(0, 10**9), n=st.integers(1, 10**9), c=st.integers(0, 10**9), m=st.integers(1, 10**9))
def test_shard_ids_sort_like_their_ranges(a, n, c, m):
    assert (shard_id(a, a + n) < shard_id(c, c + m)) == ((a, a + n) < (c, c + m))


@pytest.mark.parametrize(("frames", "pairs", "field"), [(1, 10, "total_frames"), (0, 10, "total_frames"),
                                                         (100, 0, "shard_pairs")])
def test_plan_rejects_bad_inputs(frames, pairs, field):
    with pytest.raises(ValueError, match=field):
        plan_shards(frames, pairs)


@settings(max_examples=30, deadline=None)
@given(first=st.integers(0, 10**6), n=st.integers(1, 300), seed=st.integers(0, 2**31))
def test_output_round_trip_and_validation(first, n, seed):
    rng = np.random.default_rng(seed)
    fwd = rng.dirichlet(np.ones(5), n).astype(np.float32)
    bwd = rng.dirichlet(np.ones(5), n).astype(np.float32)
    ms = rng.random(n).astype(np.float32)
    data = encode_output(first, first + n, "mv_1", fwd, bwd, ms)
    out = decode_output(data, first, first + n, "mv_1")
    np.testing.assert_array_equal(out["forward"], fwd)
    np.testing.assert_array_equal(out["backward"], bwd)
    np.testing.assert_array_equal(out["processing_time_ms"], ms)
    for bad in [(first, first + n + 1, "mv_1"), (first + 1, first + n + 1, "mv_1"), (first, first + n, "mv_2")]:
        with pytest.raises(InvalidShardOutput):
            decode_output(data, *bad)
    with pytest.raises(InvalidShardOutput, match="unreadable"):
        decode_output(data[: len(data) // 2], first, first + n, "mv_1")
    over = fwd.copy()
    over[n // 2, 0] = 1.5  # a probability above 1
    with pytest.raises(InvalidShardOutput, match="forward"):
        decode_output(encode_output(first, first + n, "mv_1", over, bwd, ms), first, first + n, "mv_1")
    with pytest.raises(InvalidShardOutput, match="backward"):
        decode_output(encode_output(first, first + n, "mv_1", fwd, bwd[:-1] if n > 1 else bwd * np.nan, ms),
                      first, first + n, "mv_1")


def test_shards_are_sized_from_measured_throughput_and_target_seconds():
    # 3000 pairs/s x 60 s = 180,000 pairs: one cold start per minute of GPU work, whole 256-frame windows
    assert sized_shard_pairs(3000.0, 60.0, 1000) == 180_000 - 180_000 % 256
    assert sized_shard_pairs(20.0, 60.0, 1000) == 1200 - 1200 % 256  # a slow CPU container: smaller shards
    assert sized_shard_pairs(1.0, 1.0, 1000) == 256  # clamped to one decode window
    assert sized_shard_pairs(None, 60.0, 1000) == 1000  # nothing measured: the fixed shard_pairs
    with pytest.raises(ValueError, match="pairs_per_s"):
        sized_shard_pairs(0.0, 60.0, 1000)
    s = Settings(shard_pairs_per_s=500.0, shard_target_s=30.0)
    assert shard_pairs_from_settings(s) == 15_000 - 15_000 % 256
    assert shard_pairs_from_settings(Settings(shard_pairs=777)) == 777
