"""Fixtures shared by the integration tests."""

from contextlib import ExitStack

import pytest

from tests.integration.faults import FAST_TIMING
from tests.integration.harness import e2e_settings, open_stack


@pytest.fixture
def make_stack(redis_url, pg_dsn, db_schema, moto_s3, s3_bucket, tmp_path):
    """``make(**settings_overrides) -> Stack``: producer + registry + S3 store on the test services, with
    the fast reliability timings; everything it starts stops at the end of the test."""
    with ExitStack() as es:
        def make(**overrides):
            settings = e2e_settings(redis_url=redis_url, pg_dsn=pg_dsn, db_schema=db_schema, tmp_path=tmp_path,
                                    s3_endpoint=moto_s3.endpoint_url, s3_bucket=s3_bucket,
                                    **(FAST_TIMING | overrides))
            return open_stack(settings, es)
        yield make


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own (append-only file), to stop and restart."""
    from tests.private_redis import OwnRedis

    (tmp_path / "redis").mkdir()
    server = OwnRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_pg():
    """A PostgreSQL cluster of this test's own (tests/private_postgres.py), started; removed afterwards."""
    from tests.private_postgres import PrivatePostgres

    server = PrivatePostgres()
    yield server
    server.close()
