#!/usr/bin/env python
"""The Supabase migration of the webhook trigger, generated from sql/supabase_webhook_trigger.sql (the
source, which tests/integration/test_producer_trigger.py runs): that SQL, preceded by pg_net and the
tables' schema, so `supabase db push` applies it with no manual step.

Usage: ``.venv/bin/python scripts/supabase_migration.py --write`` rewrites the migration file;
``--check`` exits 1 when it is out of step (tests/unit/test_supabase_migration_in_step.py does the same).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "sql" / "supabase_webhook_trigger.sql"
MIGRATION = REPO / "supabase" / "migrations" / "20261201000000_captionacc_frames_webhook.sql"
SCHEMA = "captionacc_production"  # COMPAT.md §6; the schema of cropped_frames_versions

HEADER = """\
-- Supabase migration (`supabase db push`): POST a Database-Webhook payload to the boundaries producer when
-- a cropped_frames_versions row reaches status 'active' (COMPAT.md §6-7).
-- GENERATED from sql/supabase_webhook_trigger.sql by `scripts/supabase_migration.py --write`: edit the
-- source and regenerate (tests/unit/test_supabase_migration_in_step.py fails when they differ).
--
-- The producer's URL and secret come from Supabase Vault, never from this file. Before (or after) pushing:
--   select vault.create_secret('https://<producer host>/webhooks/supabase', 'boundaries_webhook_url');
--   select vault.create_secret('<the producer''s BOUNDARIES_WEBHOOK_SECRET>', 'boundaries_webhook_secret');
-- (vault.update_secret(id, new_secret) changes one; the trigger reads vault.decrypted_secrets on each row.)

-- pg_net sends the request (net.http_post); on Supabase it is available, elsewhere it must be installed
DO $migration$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_net') THEN
        CREATE EXTENSION IF NOT EXISTS pg_net;
    END IF;
END $migration$;

-- the tables' schema; the functions below keep it (SET search_path FROM CURRENT)
SET search_path TO {schema};

-- ---- sql/supabase_webhook_trigger.sql ------------------------------------------------------------
"""
FOOTER = """
RESET search_path;
"""


def render(schema: str = SCHEMA) -> str:
    """The migration's text: HEADER (pg_net, ``SET search_path TO schema``), the source, FOOTER."""
    return HEADER.format(schema=schema) + SOURCE.read_text() + FOOTER


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help=f"rewrite {MIGRATION.relative_to(REPO)}")
    g.add_argument("--check", action="store_true", help="exit 1 when the migration is out of step")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if not MIGRATION.is_file() or MIGRATION.read_text() != text:
            print(f"{MIGRATION.relative_to(REPO)} is out of step with {SOURCE.relative_to(REPO)}: "
                  "run scripts/supabase_migration.py --write", file=sys.stderr)
            return 1
        return 0
    if args.write:
        MIGRATION.parent.mkdir(parents=True, exist_ok=True)
        MIGRATION.write_text(text)
        return 0
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
