"""Event selection of Supabase webhook payloads (COMPAT.md §6-7) and webhook auth checks."""

from __future__ import annotations

import time
import uuid

import pytest
from pydantic import SecretStr, ValidationError

from producer.auth import Unauthorized, check_bearer, check_signature, sign
from producer.payload import WebhookEnvelope, select_event

TABLES = ("cropped_frames_versions", "videos")
V, T = str(uuid.uuid4()), str(uuid.uuid4())


def env(**kw) -> WebhookEnvelope:
    base = {"type": "UPDATE", "table": "cropped_frames_versions", "schema": "captionacc_production",
            "record": {"video_id": V, "tenant_id": T, "version": 2, "status": "active"},
            "old_record": {"video_id": V, "tenant_id": T, "version": 2, "status": "processing"}}
    return WebhookEnvelope.model_validate({**base, **kw})


def test_version_reaching_active_is_selected():
    sel = select_event(env(), TABLES)
    assert sel.selected and (sel.video_id, sel.tenant_id, sel.version) == (V, T, 2)
    ins = select_event(env(type="INSERT", old_record=None), TABLES)
    assert ins.selected and ins.version == 2


def test_uppercase_uuid_is_canonicalised():
    sel = select_event(env(record={"video_id": V.upper(), "tenant_id": T, "version": 2, "status": "active"}),
                       TABLES)
    assert sel.video_id == V


@pytest.mark.parametrize("kw,code", [
    ({"old_record": {"status": "active"}}, "already_active"),
    ({"record": {"video_id": V, "tenant_id": T, "version": 2, "status": "archived"}}, "not_active"),
    ({"record": {"video_id": V, "tenant_id": T, "version": None, "status": "active"}}, "null_field"),
    ({"record": {"status": "active"}}, "null_field"),
    ({"type": "DELETE", "record": None}, "type"),
    ({"record": None}, "null_record"),
    ({"table": "boundary_inference_runs"}, "table"),
])
def test_non_activations_are_ignored(kw, code):
    sel = select_event(env(**kw), TABLES)
    assert not sel.selected and sel.code == code and sel.reason


def test_table_selection_is_configurable():
    assert select_event(env(), ("videos",)).code == "table"


def test_events_of_other_schemas_are_ignored_and_a_null_schema_is_taken():
    staging = select_event(env(schema="captionacc_staging"), TABLES, ("captionacc_production",))
    assert not staging.selected and staging.code == "schema" and "captionacc_staging" in staging.reason
    assert select_event(env(), TABLES, ("captionacc_production",)).selected
    assert select_event(env(schema=None), TABLES, ("captionacc_production",)).selected
    assert select_event(env(schema="anything"), TABLES).selected  # no schema filter given


def test_videos_update_with_a_new_current_version():
    rec = {"id": V, "tenant_id": T, "current_cropped_frames_version": 4, "deleted_at": None, "title": "x"}
    sel = select_event(env(table="videos", record=rec, old_record={**rec, "current_cropped_frames_version": 3}),
                       TABLES)
    assert sel.selected and (sel.video_id, sel.version) == (V, 4)
    same = select_event(env(table="videos", record=rec, old_record=rec), TABLES)
    assert same.code == "unchanged"
    to_null = select_event(env(table="videos", record={**rec, "current_cropped_frames_version": None},
                               old_record=rec), TABLES)
    assert to_null.code == "null_field"
    deleted = select_event(env(table="videos", record={**rec, "deleted_at": "2026-01-01T00:00:00Z"},
                               old_record=None), TABLES)
    assert deleted.code == "deleted"


@pytest.mark.parametrize("record", [
    {"video_id": "nope", "tenant_id": T, "version": 1, "status": "active"},
    {"video_id": V, "tenant_id": 5, "version": 1, "status": "active"},
    {"video_id": V, "tenant_id": T, "version": "1", "status": "active"},
    {"video_id": V, "tenant_id": T, "version": 1.5, "status": "active"},
    {"video_id": V, "tenant_id": T, "version": -1, "status": "active"},
    {"video_id": V, "tenant_id": T, "version": 2**40, "status": "active"},
    {"video_id": V, "tenant_id": T, "version": 1, "status": ["active"]},
])
def test_wrong_types_and_bad_ids_are_validation_errors(record):
    with pytest.raises(ValidationError) as e:
        select_event(env(record=record), TABLES)
    assert e.value.errors()[0]["loc"]


def test_envelope_rejects_unknown_type_and_non_object_records():
    for bad in ({"type": "TRUNCATE"}, {"record": [1, 2]}, {"table": 7}):
        with pytest.raises(ValidationError):
            env(**bad)


def test_bearer_check():
    secret = SecretStr("s3cr3t")
    check_bearer("Bearer s3cr3t", secret)
    check_bearer("bearer s3cr3t", secret)
    for bad in (None, "", "Bearer", "Bearer s3cr3", "Basic s3cr3t", "Bearer s3cr3t2", "Bearer \u00e9"):
        with pytest.raises(Unauthorized) as e:
            check_bearer(bad, secret)
        assert "s3cr3t" not in str(e.value)


def test_standard_webhooks_signature():
    secret = SecretStr("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body, now = b'{"a":1}', int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now),
               "webhook-signature": "v1,bogus " + sign(secret, "msg_1", now, body)}
    check_signature(headers, body, secret, tolerance_s=300)
    with pytest.raises(Unauthorized, match="from now"):
        check_signature(headers, body, secret, tolerance_s=300, now=now + 301)
    with pytest.raises(Unauthorized, match="does not match"):
        check_signature(headers, body + b" ", secret, tolerance_s=300)
    with pytest.raises(Unauthorized, match="webhook-id"):
        check_signature({**headers, "webhook-id": ""}, body, secret, tolerance_s=300)
    with pytest.raises(Unauthorized, match="unix seconds"):
        check_signature({**headers, "webhook-timestamp": "soon"}, body, secret, tolerance_s=300)


def test_signature_matches_the_standard_webhooks_reference_vector():
    # Example from the Standard Webhooks spec / svix docs
    secret = SecretStr("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
