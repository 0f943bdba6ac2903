"""The in-flight wait, timing settings and connection priming of the producer (real HTTP, Redis and
PostgreSQL).

Focus: the shared in-flight poll (producer/inflight.py), the producer's timing settings and the
warm-up's priming of registry connections. The first two tests reproduced defects (fixed: each caller
now waits its own budget on the shared poll; create_app re-checks timing of settings made by model_copy).
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest
import redis

from boundaries.events import JobEvent
from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from producer.app import create_app
from tests.integration import test_producer_hung_services_and_races as brk
from tests.integration.test_producer_support import SECRET, ServerThread, clear_queues, make_settings, version_payload

pytestmark = pytest.mark.integration
owned = brk.owned  # the fixture: a producer built like production (own pool, timeouts, warm-up)
AUTH = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}


def _post(url: str, payload: dict) -> httpx.Response:
    return httpx.post(url + "/webhooks/supabase", headers=AUTH, json=payload, timeout=15)


def test_a_later_copy_gets_its_own_wait_not_the_first_copys_leftover(owned, pg_dsn, db_schema):
    # Given a job recorded by another request that has not sent it yet (it is between INSERT and
    # send_task), and a producer with the default 2 s deadline (a copy waits up to 1 s for the owner)
    server, settings, _app = owned()
    reg = Registry(Database(pg_dsn, db_schema))
    vid, tid = str(uuid.uuid4()), str(uuid.uuid4())
    job_id, _ = reg.jobs.record(JobEvent(video_id=vid, tenant_id=tid, cropped_frames_version=1,
                                        model_version=settings.model_version, priority="high", source="webhook"))
    answers: dict[str, tuple[int, float]] = {}

    def copy(name: str, t0: float) -> None:
        r = _post(server.url, version_payload(vid, tid))
        answers[name] = (r.status_code, round(time.perf_counter() - t0, 2))

    try:
        t0 = time.perf_counter()
        first = threading.Thread(target=copy, args=("first", t0))
        first.start()
        time.sleep(0.8)
        # When a second copy of the webhook arrives 0.8 s later, and the owner sends the job at 1.3 s
        # (0.5 s into the second copy's own 1 s wait)
        t1 = time.perf_counter()
        second = threading.Thread(target=copy, args=("second", t1))
        second.start()
        time.sleep(max(0.0, 1.3 - (time.perf_counter() - t0)))
        reg.jobs.mark_sent(job_id)
        first.join(10)
        second.join(10)
        # Then the second copy, still inside its own wait, sees the job sent: 200 duplicate. (Observed:
        # 503 after ~0.2 s — it joined the first copy's poll, created with the first copy's budget, and
        # got that poll's "unsent" when the *first* copy's second ran out; InFlightJobs.wait documents
        # "unsent" as "still not sent after budget_s seconds".)
        assert answers["second"][0] == 200, answers
    finally:
        reg.db.close()


def test_producer_started_before_migrate_works_once_migrated(redis_url, pg_dsn, db_schema):
    # Given a producer started before `boundaries migrate` ran (deploy order: both start together), so
    # warm-up's priming of each registry connection fails (no jobs table yet)
    settings = make_settings(redis_url, pg_dsn, db_schema, producer_connections=2)
    app = create_app(settings)
    r = redis.Redis.from_url(redis_url)
    try:
        with ServerThread(app) as server:
            assert app.state.warm_up.errors.get("registry"), app.state.warm_up
            # When the schema is migrated afterwards
            Database(pg_dsn, db_schema).migrate()
            # Then webhooks are queued (no 5xx left behind by the failed priming)
            codes = [_post(server.url, version_payload(str(uuid.uuid4()), str(uuid.uuid4()))).status_code
                     for _ in range(4)]
        assert codes == [202] * 4, codes
    finally:
        clear_queues(r, settings)
        r.close()


def test_producer_refuses_or_fixes_settings_copied_with_a_shorter_deadline(redis_url, pg_dsn, db_schema):
    # Given settings whose service timeouts were derived from the default 2 s deadline, copied with a
    # shorter deadline the way the main job and the tests derive settings (model_copy runs no validator)
    settings = make_settings(redis_url, pg_dsn, db_schema).model_copy(update={"producer_deadline_s": 0.4})
    # When a producer is built from them
    try:
        app = create_app(settings)
    except ValueError:
        return  # refusing timeouts that do not nest is a fix
    # Then its registry pool gives up before the request deadline (observed: the pool waits 1.0 s > 0.4 s
    # deadline — the nesting _producer_timing enforces for Settings() is silently lost, so a busy or hung
    # registry is answered by the deadline's TimeoutError with the thread still queued for a connection)
    db_timeout = app.state.registry.db._timeout_s
    assert db_timeout < settings.producer_deadline_s, (db_timeout, settings.producer_deadline_s)
