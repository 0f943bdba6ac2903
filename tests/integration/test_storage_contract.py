"""One contract for every ObjectStore: LocalStore (a directory) and S3Store (moto server, real HTTP)."""

from __future__ import annotations

import threading

import pytest

from boundaries.errors import ObjectNotFound
from boundaries.storage.factory import open_store
from boundaries.storage.local import LocalStore
from boundaries.storage.s3 import S3Store

pytestmark = pytest.mark.integration

SMALL_MULTIPART = 5 * 1024 * 1024  # S3's minimum part size


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    moto = request.getfixturevalue("moto_s3")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store(bucket, endpoint_url=moto.endpoint_url, multipart_threshold_bytes=SMALL_MULTIPART)


def test_put_get_overwrite_size_exists(store):
    store.put_bytes("a/b/c.bin", b"one")
    assert store.get_bytes("a/b/c.bin") == b"one"
    assert store.exists("a/b/c.bin") and store.size("a/b/c.bin") == 3
    store.put_bytes("a/b/c.bin", b"second")
    assert store.get_bytes("a/b/c.bin") == b"second" and store.size("a/b/c.bin") == 6
    store.put_bytes("a/empty", b"")
    assert store.get_bytes("a/empty") == b""


def test_missing_key_raises_object_not_found(store):
    assert not store.exists("nope/x")
    with pytest.raises(ObjectNotFound, match="nope/x"):
        store.get_bytes("nope/x")
    with pytest.raises(ObjectNotFound, match="nope/x"):
        store.size("nope/x")


def test_delete_is_idempotent(store):
    store.put_bytes("d/k", b"x")
    store.delete("d/k")
    store.delete("d/k")
    assert not store.exists("d/k")
    assert list(store.list_keys("d/")) == []


def test_list_prefix_order_and_pagination(store):
    # Given 1105 keys under one prefix (more than one S3 page of 1000) and keys beside it
    keys = [f"p/modulo_1/chunk_{i:010d}.webm" for i in range(1105)]
    for k in keys:
        store.put_bytes(k, b".")
    store.put_bytes("p2/other", b".")
    store.put_bytes("q/other", b".")
    # Then listing returns exactly the prefix's keys, lexicographically, across pages
    assert list(store.list_keys("p/")) == sorted(keys)
    assert list(store.list_keys("p/modulo_1/chunk_000000110")) == sorted(keys[1100:1105])
    assert list(store.list_keys("zzz/")) == []
    # a prefix that ends inside a key segment matches across directories, as S3's does
    assert list(store.list_keys("p")) == sorted([*keys, "p2/other"])
    assert list(store.list_keys("p2/oth")) == ["p2/other"]


def test_large_object_round_trip(store):
    # Given an object above the multipart threshold (S3Store: multipart upload, 2 parts)
    data = bytes(range(256)) * (SMALL_MULTIPART // 256 + 4096)
    store.put_bytes("big/obj", data)
    assert store.size("big/obj") == len(data)
    assert store.get_bytes("big/obj") == data
    if isinstance(store, S3Store):  # a multipart upload's ETag ends in -<parts>
        assert store._client.head_object(Bucket=store.bucket, Key="big/obj")["ETag"].endswith('-2"')


def test_concurrent_writers_leave_a_whole_object(store):
    # Given writers racing on one key; readers must never see a mix
    blobs = [bytes([i]) * 200_000 for i in range(6)]
    threads = [threading.Thread(target=store.put_bytes, args=("race/k", b)) for b in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_bytes("race/k") in blobs


def test_describe_rebuilds_the_store(store, monkeypatch):
    # Given a description (JSON-safe, no secrets) as passed to another process
    monkeypatch.setenv("BOUNDARIES_S3_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("BOUNDARIES_S3_SECRET_ACCESS_KEY", "testing-secret")
    d = store.describe()
    assert "testing-secret" not in repr(d)
    store.put_bytes("desc/k", b"v")
    # Then open_store gives a store reading the same objects
    assert open_store(d).get_bytes("desc/k") == b"v"


def test_s3_client_config_is_wasabi_safe(moto_s3, s3_bucket):
    s = S3Store(s3_bucket, endpoint_url=moto_s3.endpoint_url)
    cfg = s._client.meta.config
    assert cfg.request_checksum_calculation == "when_required"
    assert cfg.response_checksum_validation == "when_required"
    assert cfg.retries == {"mode": "standard", "total_max_attempts": 5}
    assert s.describe() == {"backend": "s3", "bucket": s3_bucket, "region": "us-east-1",
                            "endpoint_url": moto_s3.endpoint_url}


def test_s3_from_settings_uses_secretstr_credentials(moto_s3, s3_bucket):
    from config.settings import Settings

    settings = Settings(storage_backend="s3", s3_bucket=s3_bucket, s3_endpoint_url=moto_s3.endpoint_url,
                        s3_access_key_id="AKIAEXAMPLE", s3_secret_access_key="secret-value")  # noqa: S106
    s = S3Store.from_settings(settings)
    s.put_bytes("k", b"v")
    assert s.get_bytes("k") == b"v"
    assert "secret-value" not in repr(vars(s))
