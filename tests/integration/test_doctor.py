"""``boundaries doctor`` on real services (Redis, PostgreSQL, moto S3): one line per check, each failure
naming the setting or command that fixes it, exit 0 / 78 (a setting) / 69 (a service down)."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3
import psycopg
import pytest

from boundaries.health import migration_names
from boundaries.registry.db import Database
from tests.conftest import REPO
from tests.services import free_port

BOUNDARIES = [sys.executable, "-m", "boundaries_cli.main"]


@pytest.fixture
def doctor_env(redis_url, pg_dsn, db_schema, moto_s3, s3_bucket, tmp_path):
    """Environment of a healthy deployment: test Redis, a migrated schema, an existing bucket, local runner;
    Modal credentials cleared (MODAL_CONFIG_PATH points at a missing file)."""
    db = Database(pg_dsn, db_schema)
    db.migrate()
    db.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOUNDARIES_", "MODAL_"))}
    return env | {"BOUNDARIES_REDIS_URL": redis_url, "BOUNDARIES_DATABASE_URL": pg_dsn,
                  "BOUNDARIES_DB_SCHEMA": db_schema, "BOUNDARIES_STORAGE_BACKEND": "s3",
                  "BOUNDARIES_S3_BUCKET": s3_bucket, "BOUNDARIES_S3_ENDPOINT_URL": moto_s3.endpoint_url,
                  "BOUNDARIES_S3_ACCESS_KEY_ID": "testing", "BOUNDARIES_S3_SECRET_ACCESS_KEY": "testing",
                  "MODAL_CONFIG_PATH": str(tmp_path / "no-modal.toml")}


def doctor(env: dict[str, str]) -> tuple[int, dict[str, str]]:
    """(exit status, {check name: its line}) of one ``boundaries doctor`` run."""
    proc = subprocess.run([*BOUNDARIES, "doctor"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = {}
    for line in proc.stdout.strip().splitlines():
        tag, rest = line.split(None, 1)
        name = rest.split(":", 1)[0]
        lines[name] = f"{tag} {rest}"
    return proc.returncode, lines


def test_all_services_ok(doctor_env, moto_s3, s3_bucket):
    status, lines = doctor(doctor_env)
    assert status == 0, lines
    assert set(lines) == {"redis", "registry", "store", "modal"}
    assert all(lines[n].startswith("ok ") for n in ("redis", "registry", "store")), lines
    assert lines["modal"].startswith("skip ") and "BOUNDARIES_RUNNER=local" in lines["modal"]
    assert f"{len(migration_names())} migrations applied" in lines["registry"]
    # the write probe left nothing behind
    s3 = boto3.client("s3", endpoint_url=moto_s3.endpoint_url, region_name="us-east-1")
    assert s3.list_objects_v2(Bucket=s3_bucket, Prefix="doctor/").get("KeyCount", 0) == 0


def test_a_missing_bucket_fails_naming_the_bucket_setting(doctor_env):
    status, lines = doctor(doctor_env | {"BOUNDARIES_S3_BUCKET": "no-such-bucket-doctor"})
    assert status == 78, lines
    assert lines["store"].startswith("FAIL ") and "BOUNDARIES_S3_BUCKET" in lines["store"], lines
    assert "no-such-bucket-doctor" in lines["store"]
    assert lines["redis"].startswith("ok ") and lines["registry"].startswith("ok ")


def test_an_unreachable_store_endpoint_is_unavailable(doctor_env):
    status, lines = doctor(doctor_env | {"BOUNDARIES_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    assert status == 69, lines
    assert lines["store"].startswith("FAIL ") and "BOUNDARIES_S3_ENDPOINT_URL" in lines["store"], lines


def test_a_fresh_schema_fails_naming_boundaries_migrate(doctor_env, pg_dsn, db_schema):
    status, lines = doctor(doctor_env | {"BOUNDARIES_DB_SCHEMA": db_schema + "_fresh"})
    assert status == 78, lines
    assert lines["registry"].startswith("FAIL ") and "`boundaries migrate`" in lines["registry"], lines
    assert f"{len(migration_names())} of {len(migration_names())} migrations not applied" in lines["registry"]


def test_one_unapplied_migration_is_named(doctor_env, pg_dsn, db_schema):
    last = migration_names()[-1]
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(f"DELETE FROM {db_schema}.schema_migrations WHERE name = %s", (last,))
    status, lines = doctor(doctor_env)
    assert status == 78, lines
    assert f"1 of {len(migration_names())} migrations not applied" in lines["registry"] and last in lines["registry"]


def test_a_closed_redis_port_fails_naming_the_redis_setting(doctor_env):
    status, lines = doctor(doctor_env | {"BOUNDARIES_REDIS_URL": f"redis://:pw-hidden@127.0.0.1:{free_port()}/0"})
    assert status == 69, lines
    assert lines["redis"].startswith("FAIL ") and "BOUNDARIES_REDIS_URL" in lines["redis"], lines
    assert "pw-hidden" not in "".join(lines.values())


def test_the_database_down_fails_naming_the_database_setting(doctor_env):
    status, lines = doctor(doctor_env | {"BOUNDARIES_DATABASE_URL":
                                         f"postgresql://postgres:pw-hidden@127.0.0.1:{free_port()}/postgres"})
    assert status == 69, lines
    assert lines["registry"].startswith("FAIL ") and "BOUNDARIES_DATABASE_URL" in lines["registry"], lines
    assert "pw-hidden" not in "".join(lines.values())


def test_the_modal_runner_without_credentials_fails_naming_the_token(doctor_env):
    status, lines = doctor(doctor_env | {"BOUNDARIES_RUNNER": "modal"})
    assert status == 78, lines
    assert lines["modal"].startswith("FAIL ") and "MODAL_TOKEN_ID" in lines["modal"], lines
