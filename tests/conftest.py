from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests import services

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (CI lays a copy there); BOUNDARIES_SHARED_DIR overrides."""
    d = Path(os.environ.get("BOUNDARIES_SHARED_DIR", REPO.parent / "shared"))
    assert (d / "data" / "real").is_dir(), f"shared data not found at {d}; set BOUNDARIES_SHARED_DIR"
    return d


@pytest.fixture(scope="session")
def real_data(shared_dir) -> Path:
    return shared_dir / "data" / "real"


@pytest.fixture(scope="session")
def redis_url():
    url, handle = services.redis_url()
    yield url
    del handle


@pytest.fixture(scope="session")
def pg_dsn():
    dsn, handle = services.pg_dsn()
    yield dsn
    del handle


@pytest.fixture
def db_schema(pg_dsn):
    """A fresh, uniquely named schema (tests of several agents/sessions share one server)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture(scope="session")
def moto_s3():
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = services.MotoS3()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(moto_s3) -> str:
    import boto3

    name = f"test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=moto_s3.endpoint_url, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def tenant_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def video_id() -> str:
    return str(uuid.uuid4())
