"""sql/supabase_webhook_trigger.sql on a real PostgreSQL, with a stand-in ``net.http_post`` (pg_net is
absent here) that records each call; the recorded requests are then sent to the producer."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from boundaries.registry.db import Database
from tests.integration import test_producer_support as support

pytestmark = pytest.mark.integration
producer_factory = support.producer_factory  # the fixture

TRIGGER_SQL = Path(__file__).resolve().parents[2] / "sql" / "supabase_webhook_trigger.sql"
STAND_IN_NET = """
CREATE SCHEMA net;
CREATE TABLE net.calls (id bigserial PRIMARY KEY, url text, body jsonb, headers jsonb, timeout_ms int);
CREATE FUNCTION net.http_post(url text, body jsonb DEFAULT '{}'::jsonb, params jsonb DEFAULT '{}'::jsonb,
    headers jsonb DEFAULT '{"Content-Type": "application/json"}'::jsonb, timeout_milliseconds int DEFAULT 5000)
RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO net.calls (url, body, headers, timeout_ms) VALUES (url, body, headers, timeout_milliseconds)
    RETURNING id
$$;
"""


@pytest.fixture
def trigger_db(pg_dsn):
    """A fresh database (the ``net`` schema is database-wide) with the registry schema and trigger."""
    name = f"t_trig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    dsn = make_conninfo(pg_dsn, dbname=name)
    db = Database(dsn, "captionacc_production")
    try:
        db.migrate()
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(STAND_IN_NET)
            c.execute("SET search_path TO captionacc_production")
            c.execute(TRIGGER_SQL.read_text())
        yield dsn
    finally:
        db.close()
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _sql(dsn, query, params=()):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SET search_path TO captionacc_production")
        cur = c.execute(query, params)
        return cur.fetchall() if cur.description else None


def test_trigger_posts_only_activations_and_the_producer_queues_them(trigger_db, producer_factory):
    # given: the trigger configured with the producer's URL and secret
    p = producer_factory()
    _sql(trigger_db, "INSERT INTO boundaries_webhook_config VALUES ('url', %s), ('secret', %s)",
         (p.url + "/webhooks/supabase", support.SECRET))
    v1, v2, tenant = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    ins = ("INSERT INTO cropped_frames_versions (video_id, tenant_id, version, status)"
           " VALUES (%s, %s, %s, %s)")

    # when: a version is inserted processing, activated, touched again; another inserted active
    _sql(trigger_db, ins, (v1, tenant, 1, "processing"))
    _sql(trigger_db, "UPDATE cropped_frames_versions SET status = 'active' WHERE video_id = %s", (v1,))
    _sql(trigger_db, "UPDATE cropped_frames_versions SET status = 'active', chunk_count = 3"
         " WHERE video_id = %s", (v1,))
    _sql(trigger_db, "UPDATE cropped_frames_versions SET status = 'archived' WHERE video_id = %s", (v1,))
    _sql(trigger_db, ins, (v2, tenant, 4, "active"))

    # then: exactly two requests, shaped like Supabase Database Webhooks, with the secret header
    calls = _sql(trigger_db, "SELECT url, body, headers, timeout_ms FROM net.calls ORDER BY id")
    assert [(c[1]["type"], c[1]["record"]["video_id"]) for c in calls] == [("UPDATE", v1), ("INSERT", v2)]
    upd, new = calls[0][1], calls[1][1]
    assert upd["table"] == "cropped_frames_versions" and upd["schema"] == "captionacc_production"
    assert upd["old_record"]["status"] == "processing" and new["old_record"] is None
    assert calls[0][2] == {"Content-Type": "application/json", "Authorization": f"Bearer {support.SECRET}"}
    assert calls[0][3] == 5000

    # and the producer accepts what the trigger sends
    for url, body, headers, _ in calls:
        assert url == p.url + "/webhooks/supabase"
        r = p.post(content=json.dumps(body).encode(), secret=None, headers=headers)
        assert r.status_code == 202, r.text
    assert len(p.queued()) == 2


def test_unconfigured_trigger_never_blocks_the_write(trigger_db):
    video_id = str(uuid.uuid4())
    _sql(trigger_db, "INSERT INTO cropped_frames_versions (video_id, tenant_id, version, status)"
         " VALUES (%s, %s, 1, 'active')", (video_id, str(uuid.uuid4())))
    assert _sql(trigger_db, "SELECT count(*) FROM cropped_frames_versions WHERE video_id = %s", (video_id,)) == [(1,)]
    assert _sql(trigger_db, "SELECT count(*) FROM net.calls") == [(0,)]


def test_bad_trigger_configuration_never_blocks_the_write(trigger_db):
    # a timeout that is not an integer used to fail in the function's DECLARE block, outside its
    # exception handler: the version's INSERT itself failed
    _sql(trigger_db, "INSERT INTO boundaries_webhook_config (name, value) VALUES ('url', 'http://127.0.0.1:9/x'),"
         " ('secret', 's3cret-value-for-the-test'), ('timeout_ms', '5s')")
    video_id = str(uuid.uuid4())
    _sql(trigger_db, "INSERT INTO cropped_frames_versions (video_id, tenant_id, version, status)"
         " VALUES (%s, %s, 1, 'active')", (video_id, str(uuid.uuid4())))
    assert _sql(trigger_db, "SELECT count(*) FROM cropped_frames_versions WHERE video_id = %s", (video_id,)) == [(1,)]
    assert _sql(trigger_db, "SELECT count(*) FROM net.calls") == [(0,)]
