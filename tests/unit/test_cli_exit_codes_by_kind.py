"""boundaries_cli/exits.py maps each kind of failure to its sysexits status and a one-line message, on real
exception instances of our tree and of the libraries (psycopg, redis, kombu, botocore, pydantic)."""

from __future__ import annotations

import botocore.exceptions
import kombu.exceptions
import psycopg
import pytest
import redis
from pydantic import BaseModel, SecretStr, ValidationError

from boundaries.errors import (
    ConfigError,
    InvalidId,
    LayoutError,
    RegistryError,
    RegistryUnavailable,
    ShardFailed,
    StoreMisconfigured,
    StoreUnavailable,
)
from boundaries_cli.exits import classify, exit_code_for
from config.settings import Settings


def _settings_error(**kw) -> ValidationError:
    with pytest.raises(ValidationError) as exc:
        Settings(**kw)
    return exc.value


class _Payload(BaseModel):
    n: int


@pytest.mark.parametrize("exc,code", [
    (ConfigError("BOUNDARIES_REDIS_URL is not set"), 78),
    (StoreMisconfigured("bucket 'x' does not exist; set BOUNDARIES_S3_BUCKET"), 78),
    (ValueError("heartbeat_stale_s (BOUNDARIES_HEARTBEAT_STALE_S=9) must be below ..."), 78),
    (StoreUnavailable("endpoint down"), 69),
    (RegistryUnavailable("registry database h:1/db unavailable"), 69),
    (ShardFailed("2 shards failed"), 69),
    (psycopg.OperationalError("connection refused"), 69),
    (redis.ConnectionError("Error 111 connecting"), 69),
    (kombu.exceptions.OperationalError("broker down"), 69),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), 69),
    (ConnectionRefusedError(111, "refused"), 69),
    (InvalidId("id must be a UUID"), 65),
    (LayoutError("layout.db unreadable"), 65),
    (ValueError("crop must be four numbers"), 65),
    (FileNotFoundError(2, "No such file", "x.mp4"), 65),
    (RegistryError("statement failed"), 70),
    (RuntimeError("boom"), 70),
])
def test_each_kind_has_its_status(exc, code):
    assert exit_code_for(exc) == code
    assert "\n" not in classify(exc).message


def test_a_settings_validation_error_names_the_variable_and_value():
    f = classify(_settings_error(shard_pairs="many"))
    assert f.code == 78 and "BOUNDARIES_SHARD_PAIRS='many'" in f.message and "\n" not in f.message


def test_a_settings_validation_error_never_shows_a_secret_value():
    f = classify(_settings_error(s3_access_key_id=["AKIA-not-to-be-shown"], webhook_secret=SecretStr("x")))
    assert f.code == 78 and "BOUNDARIES_S3_ACCESS_KEY_ID" in f.message
    assert "AKIA-not-to-be-shown" not in f.message


def test_a_validation_error_of_input_data_is_a_data_error():
    with pytest.raises(ValidationError) as exc:
        _Payload(n="x")
    assert exit_code_for(exc.value) == 65


def test_a_registry_without_its_tables_says_run_migrate():
    try:
        try:
            raise psycopg.errors.UndefinedTable('relation "boundary_inference_jobs" does not exist')
        except psycopg.Error as e:
            raise RegistryError("registry statement failed on h:1/db (UndefinedTable: ...)") from e
    except RegistryError as e:
        f = classify(e)
    assert f.code == 78 and "boundaries migrate" in f.message


def test_an_internal_error_says_how_to_see_the_traceback():
    assert "--debug" in classify(RuntimeError("boom")).message
