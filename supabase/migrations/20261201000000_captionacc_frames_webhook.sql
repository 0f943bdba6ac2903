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
SET search_path TO captionacc_production;

-- ---- sql/supabase_webhook_trigger.sql ------------------------------------------------------------
-- Supabase trigger: POST a Database-Webhook payload to the producer when a cropped-frames version
-- reaches status 'active' ("frames cropped", COMPAT.md §6-7).
--
-- Apply in the schema of the tables (default captionacc_production), e.g.
--     psql "$SUPABASE_DB_URL" -c 'SET search_path TO captionacc_production' -f sql/supabase_webhook_trigger.sql
-- (or in the Supabase SQL editor after the same SET). Needs the pg_net extension
-- (`create extension if not exists pg_net;`), which provides net.http_post.
--
-- Configuration (never hard-code the secret here):
--   * Supabase Vault, if present: secrets named 'boundaries_webhook_url' and
--     'boundaries_webhook_secret' (select vault.create_secret('https://…/webhooks/supabase',
--     'boundaries_webhook_url'); select vault.create_secret('<secret>', 'boundaries_webhook_secret');)
--   * otherwise the table boundaries_webhook_config (name, value) created below, readable only by
--     its owner: insert ('url', …), ('secret', …), optionally ('timeout_ms', '5000').
-- The secret must equal the producer's BOUNDARIES_WEBHOOK_SECRET; it is sent as
-- "Authorization: Bearer <secret>".
--
-- Payload (same as Supabase Database Webhooks): {"type", "table", "schema", "record", "old_record"}.
-- pg_net sends after commit, once, with no retry; a failure here never blocks the row's write
-- (the producer's reconciler re-finds active versions without a job).

CREATE TABLE IF NOT EXISTS boundaries_webhook_config (
    name text PRIMARY KEY CHECK (name IN ('url', 'secret', 'timeout_ms')),
    value text NOT NULL
);
REVOKE ALL ON boundaries_webhook_config FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        EXECUTE 'REVOKE ALL ON boundaries_webhook_config FROM anon';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        EXECUTE 'REVOKE ALL ON boundaries_webhook_config FROM authenticated';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION boundaries_webhook_setting(setting text) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    result text;
BEGIN
    IF setting IN ('url', 'secret') AND to_regclass('vault.decrypted_secrets') IS NOT NULL THEN
        EXECUTE 'SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = $1 LIMIT 1'
            INTO result USING 'boundaries_webhook_' || setting;
        IF result IS NOT NULL THEN
            RETURN result;
        END IF;
    END IF;
    SELECT value INTO result FROM boundaries_webhook_config WHERE name = setting;
    RETURN result;
END $$;
REVOKE ALL ON FUNCTION boundaries_webhook_setting(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION boundaries_notify_version_activated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    url text;
    secret text;
    timeout_ms int;
    payload jsonb;
BEGIN
    -- everything, the configuration lookups included (a vault error, a timeout_ms that is not an
    -- integer), runs inside this block: nothing here may make the row's write fail
    BEGIN
        url := boundaries_webhook_setting('url');
        secret := boundaries_webhook_setting('secret');
        timeout_ms := COALESCE(boundaries_webhook_setting('timeout_ms'), '5000')::int;
        IF url IS NULL OR secret IS NULL THEN
            RAISE WARNING 'boundaries webhook not configured (url/secret); the reconciler will find version % of video %',
                NEW.version, NEW.video_id;
            RETURN NEW;
        END IF;
        payload := jsonb_build_object(
            'type', TG_OP,
            'table', TG_TABLE_NAME,
            'schema', TG_TABLE_SCHEMA,
            'record', to_jsonb(NEW),
            'old_record', CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END
        );
        PERFORM net.http_post(
            url := url,
            body := payload,
            params := '{}'::jsonb,
            headers := jsonb_build_object('Content-Type', 'application/json',
                                          'Authorization', 'Bearer ' || secret),
            timeout_milliseconds := timeout_ms
        );
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'boundaries webhook not sent (%); the reconciler will find version % of video %',
            SQLERRM, NEW.version, NEW.video_id;
    END;
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION boundaries_notify_version_activated() FROM PUBLIC;

DROP TRIGGER IF EXISTS boundaries_version_activated_insert ON cropped_frames_versions;
CREATE TRIGGER boundaries_version_activated_insert
    AFTER INSERT ON cropped_frames_versions
    FOR EACH ROW WHEN (NEW.status = 'active')
    EXECUTE FUNCTION boundaries_notify_version_activated();

DROP TRIGGER IF EXISTS boundaries_version_activated_update ON cropped_frames_versions;
CREATE TRIGGER boundaries_version_activated_update
    AFTER UPDATE OF status ON cropped_frames_versions
    FOR EACH ROW WHEN (NEW.status = 'active' AND OLD.status IS DISTINCT FROM 'active')
    EXECUTE FUNCTION boundaries_notify_version_activated();

RESET search_path;
