"""The Supabase migration (supabase/migrations/*_captionacc_frames_webhook.sql) applied as `supabase db
push` does, to a real PostgreSQL with the registry tables, a stand-in pg_net (records each request) and
a stand-in Supabase Vault (``vault.create_secret`` and the ``vault.decrypted_secrets`` view): with the
secrets created as the README says, an activation is posted to the Vault's URL with the Vault's secret."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from boundaries.registry.db import Database
from tests.integration.test_producer_trigger import STAND_IN_NET

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MIGRATION = next((REPO / "supabase" / "migrations").glob("*_captionacc_frames_webhook.sql"))
STAND_IN_VAULT = """
CREATE SCHEMA vault;
CREATE TABLE vault.secrets (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text UNIQUE, secret text,
                            description text);
CREATE FUNCTION vault.create_secret(new_secret text, new_name text DEFAULT NULL, new_description text DEFAULT '')
RETURNS uuid LANGUAGE sql AS $$
    INSERT INTO vault.secrets (secret, name, description) VALUES (new_secret, new_name, new_description) RETURNING id
$$;
CREATE VIEW vault.decrypted_secrets AS SELECT id, name, description, secret AS decrypted_secret FROM vault.secrets;
"""


@pytest.fixture
def supabase_db(pg_dsn):
    name = f"t_supa_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    dsn = make_conninfo(pg_dsn, dbname=name)
    db = Database(dsn, "captionacc_production")
    try:
        db.migrate()
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(STAND_IN_NET)
            c.execute(STAND_IN_VAULT)
        yield dsn
    finally:
        db.close()
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _push(dsn: str) -> None:
    """One transaction on a fresh session, search_path left at its default, as `supabase db push` runs it."""
    with psycopg.connect(dsn) as c:
        c.execute(MIGRATION.read_text())


def test_migration_posts_activations_with_the_vault_url_and_secret(supabase_db):
    _push(supabase_db)
    with psycopg.connect(supabase_db, autocommit=True) as c:
        c.execute("select vault.create_secret('https://producer.example/webhooks/supabase', 'boundaries_webhook_url')")
        c.execute("select vault.create_secret('vault-secret-value', 'boundaries_webhook_secret')")
        video_id = str(uuid.uuid4())
        c.execute("INSERT INTO captionacc_production.cropped_frames_versions (video_id, tenant_id, version, status)"
                  " VALUES (%s, %s, 1, 'processing')", (video_id, str(uuid.uuid4())))
        c.execute("UPDATE captionacc_production.cropped_frames_versions SET status = 'active' WHERE video_id = %s",
                  (video_id,))
        calls = c.execute("SELECT url, body, headers FROM net.calls").fetchall()

    assert len(calls) == 1
    url, body, headers = calls[0]
    assert url == "https://producer.example/webhooks/supabase"
    assert headers["Authorization"] == "Bearer vault-secret-value"
    assert (body["type"], body["table"], body["schema"]) == ("UPDATE", "cropped_frames_versions",
                                                             "captionacc_production")
    assert body["record"]["video_id"] == video_id and body["old_record"]["status"] == "processing"


def test_migration_without_vault_secrets_never_blocks_the_write(supabase_db):
    _push(supabase_db)
    _push(supabase_db)  # a second push (or a reset) replaces everything in place
    with psycopg.connect(supabase_db, autocommit=True) as c:
        c.execute("INSERT INTO captionacc_production.cropped_frames_versions (video_id, tenant_id, version, status)"
                  " VALUES (%s, %s, 1, 'active')", (str(uuid.uuid4()), str(uuid.uuid4())))
        assert c.execute("SELECT count(*) FROM net.calls").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM captionacc_production.cropped_frames_versions").fetchone() == (1,)
