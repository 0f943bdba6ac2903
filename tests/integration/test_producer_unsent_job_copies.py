"""Copies of one unsent job and short deadlines (real HTTP, Redis and PostgreSQL).

Each test reproduced a defect and failed before its fix: copies of one unsent job
starving unrelated webhooks of worker threads, and a one-second deadline alone being refused.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from boundaries.events import JobEvent
from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from config.settings import Settings
from tests.integration import test_producer_hung_services_and_races as brk
from tests.integration.test_producer_support import SECRET, version_payload

pytestmark = pytest.mark.integration
owned = brk.owned  # the fixture: a producer built like production (own pool, timeouts, warm-up)
AUTH = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}


def _post(url: str, payload: dict) -> int:
    with httpx.Client(timeout=15) as c:
        return c.post(url + "/webhooks/supabase", headers=AUTH, json=payload).status_code


def test_copies_of_an_unsent_job_do_not_starve_other_events(owned, pg_dsn, db_schema):
    # Given a job recorded but not yet sent (its producer died between INSERT and send_task, e.g. killed
    # on a deploy; younger than resend_unsent_after_s), and a burst of copies of its webhook (each polls
    # _await_sent every 5 ms for producer_deadline_s / 2 in a worker thread: 200 copies keep anyio's 40
    # threads busy for ~5 s)
    server, settings, _app = owned()
    reg = Registry(Database(pg_dsn, db_schema))
    vid, tid = str(uuid.uuid4()), str(uuid.uuid4())
    reg.jobs.record(JobEvent(video_id=vid, tenant_id=tid, cropped_frames_version=1,
                            model_version=settings.model_version, priority="high", source="webhook"))
    fresh = [version_payload(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(5)]
    try:
        with ThreadPoolExecutor(170) as ex:
            dups = [ex.submit(_post, server.url, version_payload(vid, tid)) for _ in range(160)]
            time.sleep(0.3)
            # When webhooks of other, unrelated events arrive meanwhile (all services healthy)
            others = [ex.submit(_post, server.url, p) for p in fresh]
            codes = [f.result() for f in others]
            assert {f.result() for f in dups} == {503}  # the copies: 503 is their documented answer
        # Then they are queued (202): 503 is for unreachable services or this key's own unsent job only.
        # (Observed: all 503 after ~2.2 s, the deadline spent waiting for a thread token; their jobs were
        # then queued by the late threads anyway, so pg_net logs failures and /metrics counts them rejected.)
        assert codes == [202] * 5, codes
    finally:
        reg.db.close()


def test_a_one_second_deadline_alone_is_accepted(monkeypatch):
    # Given an operator who matches the producer's deadline to a 1 s pg_net timeout (Supabase's webhook
    # default) and sets only that variable, in the env shared by every service (docker-compose app-env)
    monkeypatch.setenv("BOUNDARIES_PRODUCER_DEADLINE_S", "1")
    # When any process reads its settings (producer, but also the Celery worker, reconcile, sweep, Modal)
    # Then it starts: dependent defaults fit the deadline, or the check is the producer's alone (observed:
    # "producer_db_timeout_s (1.0) must be below producer_deadline_s (1.0)" from Settings(), so the worker
    # fleet refuses to start too, and the message names no BOUNDARIES_* variable to change)
    s = Settings()
    assert s.producer_deadline_s == 1.0
