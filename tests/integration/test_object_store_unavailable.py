"""A missing bucket and an unreachable S3 endpoint (issue 14): the store raises StoreMisconfigured /
StoreUnavailable naming the setting (never "object not found", which a job turned into ``layout_error:
layout.db ... not found; re-run ingest``); a job meeting it is retried, not dead-lettered as bad input;
``/readyz`` says the store check failed and why. moto in server mode, real Redis and PostgreSQL."""

from __future__ import annotations

import time
import uuid

import boto3
import httpx
import pytest
from pydantic import SecretStr

from boundaries.errors import LayoutError, ObjectNotFound, StoreMisconfigured, StoreUnavailable, TransientError
from boundaries.events import JobEvent
from boundaries.registry.db import Database
from boundaries.registry.registry import Registry
from boundaries.storage.s3 import S3Store
from tests.integration import test_producer_support as support
from tests.services import free_port
from worker.pipeline import Deps, process_video

producer_factory = support.producer_factory  # the fixture


def _store(endpoint: str, bucket: str, **kw) -> S3Store:
    return S3Store(bucket, endpoint_url=endpoint, access_key_id="testing", secret_access_key="testing",  # noqa: S106
                   **kw)


def test_a_missing_bucket_is_a_named_configuration_error_on_every_call(moto_s3, s3_bucket):
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    store = _store(moto_s3.endpoint_url, missing)
    calls = {"get": lambda: store.get_bytes("a/layout.db"), "put": lambda: store.put_bytes("a/b", b"x"),
             "list": lambda: list(store.list_keys("a/")), "delete": lambda: store.delete("a/b"),
             "check_bucket": store.check_bucket}
    for name, call in calls.items():
        with pytest.raises(StoreMisconfigured) as exc:
            call()
        assert not isinstance(exc.value, KeyError), name  # not "object not found"
        assert isinstance(exc.value, TransientError), name  # a job meeting it is retried
        assert "BOUNDARIES_S3_BUCKET" in str(exc.value) and missing in str(exc.value), (name, str(exc.value))
    # a missing key in an existing bucket is still ObjectNotFound
    with pytest.raises(ObjectNotFound):
        _store(moto_s3.endpoint_url, s3_bucket).get_bytes("no/such/key")
    _store(moto_s3.endpoint_url, s3_bucket).check_bucket()


def test_a_multipart_put_into_a_missing_bucket_is_named(moto_s3):
    store = _store(moto_s3.endpoint_url, f"no-such-bucket-{uuid.uuid4().hex[:8]}",
                   multipart_threshold_bytes=5 * 1024 * 1024)
    with pytest.raises(StoreMisconfigured, match="BOUNDARIES_S3_BUCKET"):
        store.put_bytes("big", b"x" * (6 * 1024 * 1024))


def test_an_unreachable_endpoint_is_unavailable_naming_the_endpoint_setting():
    store = _store(f"http://127.0.0.1:{free_port()}", "bucket", max_attempts=1, timeout_s=2)
    for call in (store.check_bucket, lambda: store.get_bytes("k")):
        with pytest.raises(StoreUnavailable) as exc:
            call()
        assert not isinstance(exc.value, StoreMisconfigured)
        assert "BOUNDARIES_S3_ENDPOINT_URL" in str(exc.value)


def test_a_job_meeting_a_missing_bucket_is_retried_not_a_layout_error(moto_s3, pg_dsn, db_schema):
    # given: a worker's deps whose bucket does not exist (deleted, or a typo that slipped past start-up)
    from config.settings import Settings

    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=SecretStr(pg_dsn), db_schema=db_schema, storage_backend="s3",
                        s3_bucket=missing, s3_endpoint_url=moto_s3.endpoint_url)
    db = Database(pg_dsn, db_schema)
    db.migrate()
    deps = Deps(settings, Registry(db), _store(moto_s3.endpoint_url, missing), runner=None)
    event = JobEvent(video_id=str(uuid.uuid4()), tenant_id=str(uuid.uuid4()), cropped_frames_version=1,
                     model_version="m", source="webhook")

    # when: the job reads its layout.db
    try:
        with pytest.raises(Exception) as exc:
            process_video(event, deps, job_id=str(uuid.uuid4()), attempt=1)
    finally:
        db.close()

    # then: a transient, clearly named store error, not "layout.db not found; re-run ingest"
    assert not isinstance(exc.value, LayoutError), str(exc.value)
    assert isinstance(exc.value, StoreMisconfigured) and isinstance(exc.value, TransientError)
    assert exc.value.error_type == "store_misconfigured"
    assert "BOUNDARIES_S3_BUCKET" in str(exc.value)


def test_readyz_names_a_missing_bucket_and_recovers_when_it_exists(producer_factory, moto_s3):
    bucket = f"later-{uuid.uuid4().hex[:8]}"
    p = producer_factory(storage_backend="s3", s3_bucket=bucket, s3_endpoint_url=moto_s3.endpoint_url,
                         s3_access_key_id=SecretStr("testing"), s3_secret_access_key=SecretStr("testing"))
    r = httpx.get(p.url + "/readyz", timeout=10)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["store"] is False and body["redis"] is True and body["registry"] is True, body
    assert set(body["failed"]) == {"store"} and "BOUNDARIES_S3_BUCKET" in body["failed"]["store"], body
    assert "testing" not in r.text  # no credentials in the answer

    # when the bucket is created, /readyz turns ready once its cached answer expires (a few seconds)
    boto3.client("s3", endpoint_url=moto_s3.endpoint_url, region_name="us-east-1").create_bucket(Bucket=bucket)
    deadline = time.monotonic() + 15
    while (r := httpx.get(p.url + "/readyz", timeout=10)).status_code != 200:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.5)
    assert r.json() == {"status": "ok", "redis": True, "registry": True, "store": True}
