"""Errors cross process boundaries (local runner's process pool, Modal) with every field intact."""

import pickle

import pytest

from boundaries import errors as E

CASES = [
    E.MissingFramesError("frames 3, 4 missing", [4, 3]),
    E.CorruptChunkError("chunk does not decode", key="t/v/modulo_1/chunk_0000000001.webm"),
    E.LimitExceeded("too many frames", "frame_count_exceeded", frame_count=250_000, estimated_cost_usd=0.8),
    E.ShardFailed("2 shards failed", {"pairs_0": "boom"}),
    E.LayoutError("no video_layout_config row"),
    E.InvalidId("video_id must be a UUID, got 'x'"),
]


@pytest.mark.parametrize("err", CASES, ids=lambda e: type(e).__name__)
def test_pickle_round_trip_keeps_type_message_and_fields(err):
    back = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes, just made

    assert type(back) is type(err)
    assert str(back) == str(err)
    assert vars(back) == vars(err)


def test_permanent_and_transient_are_disjoint():
    assert isinstance(E.MissingFramesError("x"), E.PermanentError)
    assert isinstance(E.ShardFailed("x"), E.TransientError)
    assert not isinstance(E.ShardFailed("x"), E.PermanentError)
