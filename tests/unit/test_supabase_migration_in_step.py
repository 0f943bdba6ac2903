"""supabase/migrations/*_captionacc_frames_webhook.sql is generated from sql/supabase_webhook_trigger.sql
(scripts/supabase_migration.py --write): the two must not drift apart."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("supabase_migration", REPO / "scripts" / "supabase_migration.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_migration_is_the_trigger_source_with_pg_net_and_the_schema():
    sm = _script()
    migration = sm.MIGRATION.read_text()

    assert migration == sm.render(), "run .venv/bin/python scripts/supabase_migration.py --write"
    assert sm.SOURCE.read_text() in migration
    assert "SET search_path TO captionacc_production;" in migration


def test_the_migration_is_the_only_one_and_named_as_supabase_expects():
    files = sorted((REPO / "supabase" / "migrations").iterdir())
    assert [f.name for f in files] == [_script().MIGRATION.name]
    stamp, _, name = files[0].stem.partition("_")
    assert len(stamp) == 14 and stamp.isdigit() and name == "captionacc_frames_webhook"
