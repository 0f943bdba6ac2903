"""POST /webhooks/supabase over real HTTP (uvicorn on loopback) with real Redis and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest
from pydantic import SecretStr

from producer.auth import sign
from tests.integration import test_producer_support as support
from tests.integration.test_producer_support import SECRET, version_payload

producer_factory = support.producer_factory  # the fixture

pytestmark = pytest.mark.integration


def _task_event(message: bytes) -> dict:
    import base64

    body = json.loads(base64.b64decode(json.loads(message)["body"]))
    args, kwargs, _embed = body
    return kwargs["event"]


# --- auth -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("secret,header", [
    (None, None), ("wrong", None), (None, "Bearer " + SECRET.upper()), (None, "Basic " + SECRET), (None, "Bearer"),
    (None, "Bearer " + SECRET + "x"),
])
def test_unauthorized_requests_get_401_and_queue_nothing(producer_factory, video_id, tenant_id, secret,
                                                         header):
    p = producer_factory()
    headers = {"Authorization": header} if header else {}
    r = p.post(version_payload(video_id, tenant_id), secret=secret, headers=headers)
    assert r.status_code == 401
    assert SECRET not in r.text
    assert p.queued() == []
    assert p.registry.jobs.find(video_id, 1, p.settings.model_version) is None


def test_hmac_signature_required_when_configured(producer_factory, video_id, tenant_id):
    hmac_secret = SecretStr("whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM=")
    p = producer_factory(webhook_hmac_secret=hmac_secret)
    body = json.dumps(version_payload(video_id, tenant_id)).encode()
    now = int(time.time())
    # unsigned, stale, and tampered requests are refused
    assert p.post(content=body).status_code == 401
    stale = {"webhook-id": "msg_1", "webhook-timestamp": str(now - 3600),
             "webhook-signature": sign(hmac_secret, "msg_1", now - 3600, body)}
    assert p.post(content=body, headers=stale).status_code == 401
    good = {"webhook-id": "msg_2", "webhook-timestamp": str(now),
            "webhook-signature": sign(hmac_secret, "msg_2", now, body)}
    assert p.post(content=body + b" ", headers=good).status_code == 401
    assert p.queued() == []
    # a correctly signed one is queued
    r = p.post(content=body, headers=good)
    assert r.status_code == 202, r.text
    assert len(p.queued()) == 1


# --- bad input is 4xx, never 5xx -------------------------------------------------------------------
def test_malformed_bodies_get_4xx(producer_factory, video_id, tenant_id):
    p = producer_factory(webhook_max_body_bytes=4096)
    good = version_payload(video_id, tenant_id)
    cases = [
        (b"{not json", {}, 400),
        (b"\xff\xfe\x00", {}, 400),
        (b"[" * 100_00 + b"]" * 100_00, {}, 413),
        (b"[" * 2000 + b"]" * 2000, {}, 400),  # nesting deeper than the JSON decoder allows
        (b"[]", {}, 422),
        (b"null", {}, 422),
        (json.dumps({**good, "type": "TRUNCATE"}).encode(), {}, 422),
        (json.dumps({**good, "record": {**good["record"], "version": "one"}}).encode(), {}, 422),
        (json.dumps({**good, "record": {**good["record"], "version": True}}).encode(), {}, 422),
        (json.dumps({**good, "record": {**good["record"], "video_id": "not-a-uuid"}}).encode(), {}, 422),
        (json.dumps({**good, "record": {**good["record"], "tenant_id": 12}}).encode(), {}, 422),
        (json.dumps({**good, "record": "text"}).encode(), {}, 422),
        (json.dumps({**good, "pad": "x" * 5000}).encode(), {}, 413),
        (json.dumps(good).encode(), {"Content-Type": "text/plain"}, 415),
    ]
    for body, headers, expected in cases:
        r = p.post(content=body, headers=headers)
        assert r.status_code == expected, (body[:80], r.status_code, r.text)
        assert r.json()["status"] == "rejected"
    assert p.queued() == []
    metrics = httpx.get(p.url + "/metrics").text
    assert 'boundaries_webhooks_rejected_total{reason="too_large"} 2.0' in metrics


def test_oversize_body_without_content_length_is_413(producer_factory):
    p = producer_factory(webhook_max_body_bytes=1024)

    def chunks():
        for _ in range(10):
            yield b" " * 512

    r = httpx.post(p.url + "/webhooks/supabase", content=chunks(), timeout=10,
                   headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"})
    assert r.status_code == 413


# --- event selection --------------------------------------------------------------------------------
def test_irrelevant_events_are_ignored_with_a_reason(producer_factory, video_id, tenant_id):
    p = producer_factory()
    cases = [
        version_payload(video_id, tenant_id, status="processing"),
        version_payload(video_id, tenant_id, old_status="active"),
        {**version_payload(video_id, tenant_id), "type": "DELETE", "record": None},
        {**version_payload(video_id, tenant_id), "table": "boundary_inference_runs"},
        {**version_payload(video_id, tenant_id), "record": {"status": "active", "video_id": None}},
        {"type": "UPDATE", "table": "videos", "schema": "public",
         "record": {"id": video_id, "tenant_id": tenant_id, "current_cropped_frames_version": 2},
         "old_record": {"id": video_id, "tenant_id": tenant_id, "current_cropped_frames_version": 2}},
    ]
    for payload in cases:
        r = p.post(payload)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ignored" and r.json()["reason"]
    assert p.queued() == []


@pytest.mark.parametrize("case", ["version_delete", "video_delete", "version_not_active", "version_was_active",
                                  "video_unchanged"])
def test_events_not_acted_on_are_ignored_whatever_their_ids_hold(producer_factory, video_id, tenant_id, case):
    # given: an event the producer does not act on, with a malformed id (Supabase sends old_record on a
    # DELETE; COMPAT.md §7: events we do not act on get a 2xx with the reason)
    p = producer_factory()
    bad = {"id": "not-a-uuid", "video_id": "12", "tenant_id": tenant_id, "version": 1, "status": "active"}
    payload = {
        "version_delete": {**version_payload(video_id, tenant_id), "type": "DELETE", "record": None,
                           "old_record": bad},
        "video_delete": {"type": "DELETE", "table": "videos", "schema": "public", "record": None,
                         "old_record": {"id": "not-a-uuid", "tenant_id": tenant_id}},
        "version_not_active": {**version_payload(video_id, tenant_id),
                               "record": {**bad, "status": "processing"}, "old_record": bad},
        "version_was_active": {**version_payload(video_id, tenant_id), "old_record": bad},
        "video_unchanged": {"type": "UPDATE", "table": "videos", "schema": "public",
                            "record": {"id": video_id, "tenant_id": tenant_id, "current_cropped_frames_version": 2},
                            "old_record": {"id": "x", "tenant_id": "y", "current_cropped_frames_version": 2}},
    }[case]

    # when
    r = p.post(payload)

    # then
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ignored" and r.json()["reason"]
    assert p.queued() == []


def test_only_the_registry_schema_counts_by_default(producer_factory, video_id, tenant_id):
    p = producer_factory(webhook_schemas=())  # the default: only db_schema
    other = p.post(version_payload(video_id, tenant_id, schema="captionacc_staging"))
    assert other.status_code == 200 and other.json()["status"] == "ignored", other.text
    assert "captionacc_staging" in other.json()["reason"]
    assert p.queued() == []
    ours = p.post(version_payload(video_id, tenant_id, schema=p.settings.db_schema))
    assert ours.status_code == 202, ours.text
    assert len(p.queued()) == 1


def test_insert_active_and_videos_update_are_one_job(producer_factory, video_id, tenant_id):
    p = producer_factory()
    r1 = p.post(version_payload(video_id, tenant_id, 3, op="INSERT", old_status=None))
    assert r1.status_code == 202, r1.text
    r2 = p.post({"type": "UPDATE", "table": "videos", "schema": "public",
                 "record": {"id": video_id, "tenant_id": tenant_id, "current_cropped_frames_version": 3},
                 "old_record": {"id": video_id, "tenant_id": tenant_id, "current_cropped_frames_version": 2}})
    assert r2.status_code == 200 and r2.json() == {
        "status": "duplicate", "job_id": r1.json()["job_id"], "reason": r2.json()["reason"]}
    msgs = p.queued()
    assert len(msgs) == 1
    event = _task_event(msgs[0])
    assert event["job_id"] == r1.json()["job_id"]
    assert (event["video_id"], event["cropped_frames_version"], event["source"]) == (video_id, 3, "webhook")
    assert p.registry.jobs.get(r1.json()["job_id"])["status"] == "queued"


def test_concurrent_identical_webhooks_give_one_job_and_one_message(producer_factory, video_id, tenant_id):
    p = producer_factory()
    payload = version_payload(video_id, tenant_id, 5)
    barrier = threading.Barrier(3)
    responses = []

    def send():
        with httpx.Client(timeout=10) as c:
            barrier.wait()
            responses.append(p.post(payload, client=c))

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 202], [r.text for r in responses]
    assert len(p.queued()) == 1
    with p.registry.db.connection() as c:
        n = c.execute("SELECT count(*) AS n FROM boundary_inference_jobs WHERE video_id = %s",
                      (video_id,)).fetchone()["n"]
    assert n == 1


# --- availability -----------------------------------------------------------------------------------
def test_redis_down_gives_503_with_retry_after_and_leaves_no_half_state(producer_factory, video_id,
                                                                        tenant_id):
    from producer.enqueue import fail_fast_redis
    from tests.services import free_port

    p = producer_factory()
    p.enqueuer.redis = fail_fast_redis(f"redis://127.0.0.1:{free_port()}/0")
    t0 = time.perf_counter()
    r = p.post(version_payload(video_id, tenant_id))
    assert time.perf_counter() - t0 < 1.5  # inside pg_net's 1-5 s timeout
    assert r.status_code == 503 and r.headers["Retry-After"].isdigit()
    assert p.registry.jobs.find(video_id, 1, p.settings.model_version) is None
    ready = httpx.get(p.url + "/readyz", timeout=10)
    assert ready.status_code == 200  # readyz uses the app's own client, which is up


def test_broker_down_after_recording_undoes_the_job_and_dedupe_key(producer_factory, video_id, tenant_id):
    from config.celery_app import make_celery
    from producer.dispatch import fail_fast_celery
    from tests.services import free_port

    p = producer_factory()
    dead_url = f"redis://127.0.0.1:{free_port()}/0"
    dead_broker = fail_fast_celery(make_celery(p.settings.model_copy(update={"redis_url": dead_url})))
    live_broker, p.enqueuer.celery = p.enqueuer.celery, dead_broker
    try:
        t0 = time.perf_counter()
        r = p.post(version_payload(video_id, tenant_id))
        assert time.perf_counter() - t0 < 1.5
    finally:
        p.enqueuer.celery = live_broker
        dead_broker.close()
    assert r.status_code == 503, r.text
    assert p.registry.jobs.find(video_id, 1, p.settings.model_version) is None
    # the event is not stuck: a retry succeeds
    r2 = p.post(version_payload(video_id, tenant_id))
    assert r2.status_code == 202, r2.text
    assert len(p.queued()) == 1


def test_health_ready_and_metrics(producer_factory, video_id, tenant_id):
    p = producer_factory()
    assert httpx.get(p.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(p.url + "/readyz", timeout=10).json() == {"status": "ok", "redis": True, "registry": True,
                                                               "store": True}
    p.post(version_payload(video_id, tenant_id))
    p.post(version_payload(video_id, tenant_id))
    p.post(version_payload(str(uuid.uuid4()), tenant_id, status="failed"))
    text = httpx.get(p.url + "/metrics").text
    assert "boundaries_webhooks_received_total 3.0" in text
    assert "boundaries_webhooks_accepted_total 1.0" in text
    assert "boundaries_webhooks_duplicate_total 1.0" in text
    assert 'boundaries_webhooks_ignored_total{reason="not_active"} 1.0' in text
    assert "boundaries_webhook_enqueue_seconds_count 2.0" in text


def test_logs_name_the_outcome_and_never_the_secret(producer_factory, video_id, tenant_id):
    from structlog.testing import capture_logs

    p = producer_factory()
    with capture_logs() as logs:
        p.post(version_payload(video_id, tenant_id), secret=SECRET + "-wrong")
        p.post(version_payload(video_id, tenant_id), headers={"Authorization": f"Bearer {SECRET}"})
        p.post(version_payload(video_id, tenant_id, status="failed"))
    events = [e["event"] for e in logs]
    assert {"webhook.rejected", "webhook.accepted", "webhook.ignored"} <= set(events), events
    rejected = next(e for e in logs if e["event"] == "webhook.rejected")
    assert rejected["code"] == "unauthorized" and rejected["reason"]
    assert SECRET not in repr(logs)
