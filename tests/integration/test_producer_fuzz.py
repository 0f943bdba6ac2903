"""Hypothesis fuzzing of webhook payloads over real HTTP: bad or odd input never yields a 5xx."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration import test_producer_support as support

pytestmark = pytest.mark.integration
producer_factory = support.producer_factory  # the fixture

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
    max_leaves=12,
)
_ids = st.one_of(st.uuids().map(str), st.text(max_size=40), st.integers(), st.none())
_record = st.fixed_dictionaries(
    {},
    optional={"id": _ids, "video_id": _ids, "tenant_id": _ids,
              "version": st.one_of(st.integers(-5, 2**40), st.text(max_size=5), st.none(), st.booleans()),
              "status": st.one_of(st.sampled_from(["active", "processing", "failed"]), _json),
              "current_cropped_frames_version": st.one_of(st.integers(-5, 10), st.none(), _json),
              "deleted_at": st.one_of(st.none(), st.text(max_size=10), _json),
              "extra": _json},
)
_payload = st.one_of(
    _json,
    st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(["INSERT", "UPDATE", "DELETE"]), _json),
         "table": st.one_of(st.sampled_from(["cropped_frames_versions", "videos", "other"]), _json)},
        optional={"schema": _json, "record": st.one_of(_record, _json), "old_record": st.one_of(_record, _json)},
    ),
)


def test_fuzzed_payloads_never_get_a_5xx(producer_factory):
    p = producer_factory()
    seen = set()
    with httpx.Client(timeout=10) as client:

        @settings(max_examples=100, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
        @given(payload=_payload, raw=st.booleans())
        def check(payload, raw):
            body = json.dumps(payload).encode() if not raw else json.dumps(payload).encode()[:-1]
            r = p.post(content=body, client=client)
            assert r.status_code < 500, (body[:200], r.status_code, r.text)
            assert r.status_code in (200, 202, 400, 422), (body[:200], r.status_code, r.text)
            seen.add(r.status_code)

        check()
    assert {200, 422} <= seen


def test_valid_fuzzed_activations_are_queued_once(producer_factory):
    p = producer_factory()
    with httpx.Client(timeout=10) as client:

        @settings(max_examples=20, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(version=st.integers(0, 2**31 - 1), extra=st.dictionaries(st.text(max_size=8), _json, max_size=3))
        def check(version, extra):
            video_id, tenant_id = str(uuid.uuid4()), str(uuid.uuid4())
            payload = support.version_payload(video_id, tenant_id, version)
            payload["record"] = {**extra, **payload["record"]}
            before = len(p.queued())
            assert p.post(payload, client=client).status_code == 202
            assert p.post(payload, client=client).json()["status"] == "duplicate"
            assert len(p.queued()) == before + 1

        check()
