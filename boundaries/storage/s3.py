"""S3/Wasabi object store via boto3 (COMPAT.md §1); implements :class:`ObjectStore`.

* Checksums: ``request_checksum_calculation`` / ``response_checksum_validation`` =
  ``"when_required"`` (boto3 >= 1.36 defaults are rejected by S3-compatible stores).
* Retries: botocore ``standard`` mode, ``total_max_attempts`` = settings.s3_max_attempts (first try included).
* Writes: one PutObject below ``multipart_threshold_bytes`` (8 MiB), else a multipart upload via
  ``upload_fileobj``. Both are atomic on S3: readers see the old object, the new one or none.
* Listing: ``list_objects_v2`` paginator (1000 keys a page), lexicographic order.
* Errors: NoSuchBucket -> StoreMisconfigured naming ``BOUNDARIES_S3_BUCKET``; refused credentials (403
  AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch, no credentials found) -> StoreMisconfigured naming
  ``BOUNDARIES_S3_ACCESS_KEY_ID``/``_SECRET_ACCESS_KEY``; 404/NoSuchKey -> ObjectNotFound; throttling, 5xx and
  connection errors (after botocore's retries) -> StoreUnavailable (a TransientError) naming
  ``BOUNDARIES_S3_ENDPOINT_URL``; other client errors propagate as botocore errors. StoreMisconfigured is a
  StoreUnavailable, so a job that meets it is retried, never dead-lettered as bad input.
  :meth:`S3Store.check_bucket` (HEAD bucket) raises the same errors, for start-up checks.
* A lost answer to CompleteMultipartUpload: the store completed the object but the answer never
  arrived, so botocore's retry of the Complete gets ``NoSuchUpload`` (the upload id is gone). The
  object is then checked with a HEAD: if it has the uploaded size, the put succeeded; otherwise
  TransientError as before.
The client is thread-safe and shared by reader threads (``max_pool_connections`` = 32).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import structlog
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from boundaries.errors import ObjectNotFound, StoreMisconfigured, StoreUnavailable, TransientError

if TYPE_CHECKING:
    from config.settings import Settings

log = structlog.get_logger(__name__)

MULTIPART_THRESHOLD_BYTES = 8 * 1024 * 1024
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_REFUSED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "ExpiredToken",
            "InvalidToken", "InvalidSecurity", "AuthorizationHeaderMalformed"}
BUCKET_SETTING = "BOUNDARIES_S3_BUCKET"
CREDENTIAL_SETTINGS = "BOUNDARIES_S3_ACCESS_KEY_ID/BOUNDARIES_S3_SECRET_ACCESS_KEY"
ENDPOINT_SETTING = "BOUNDARIES_S3_ENDPOINT_URL"


def _client_config(max_attempts: int, timeout_s: float | None = None) -> Config:
    timeouts = {} if timeout_s is None else {"connect_timeout": timeout_s, "read_timeout": timeout_s}
    return Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=32,
        s3={"addressing_style": "path"},
        **timeouts,
    )


def _env_credentials() -> tuple[str | None, str | None]:
    for k, s in (("BOUNDARIES_S3_ACCESS_KEY_ID", "BOUNDARIES_S3_SECRET_ACCESS_KEY"),
                 ("WASABI_ACCESS_KEY", "WASABI_SECRET_KEY")):
        if os.environ.get(k) and os.environ.get(s):
            return os.environ[k], os.environ[s]
    return None, None  # boto3 default chain


def _error_code(e: BaseException) -> str | None:
    """The S3 error code of a ClientError, or of one that ``e`` was raised from (boto3's
    S3UploadFailedError wraps the ClientError of the part or Complete that failed)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ClientError):
            return str(e.response.get("Error", {}).get("Code", "")) or None
        e = e.__cause__ or e.__context__
    return None


class S3Store:
    """Objects in one bucket. Credentials are passed to boto3 only, never stored as attributes."""

    def __init__(self, bucket: str, *, region: str = "us-east-1", endpoint_url: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 max_attempts: int = 5, multipart_threshold_bytes: int = MULTIPART_THRESHOLD_BYTES,
                 timeout_s: float | None = None):
        """``timeout_s``: connect and read timeout of each request (None: botocore's 60 s); health checks
        pass a few seconds with ``max_attempts=1``."""
        self.bucket, self.region, self.endpoint_url = bucket, region, endpoint_url
        self._client = boto3.session.Session().client(
            "s3", region_name=region, endpoint_url=endpoint_url, aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key, config=_client_config(max_attempts, timeout_s))
        self._transfer = TransferConfig(multipart_threshold=multipart_threshold_bytes,
                                        multipart_chunksize=max(multipart_threshold_bytes, 5 * 1024 * 1024),
                                        max_concurrency=4)
        self.multipart_threshold_bytes = multipart_threshold_bytes

    @classmethod
    def from_settings(cls, settings: Settings, *, max_attempts: int | None = None,
                      timeout_s: float | None = None) -> S3Store:
        """The store of ``settings``; ``max_attempts`` (default ``s3_max_attempts``) and ``timeout_s`` as in
        the constructor."""
        key = settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None
        secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
        if not (key and secret):
            key, secret = _env_credentials()
        return cls(settings.s3_bucket, region=settings.s3_region, endpoint_url=settings.s3_endpoint_url,
                   access_key_id=key, secret_access_key=secret,
                   max_attempts=settings.s3_max_attempts if max_attempts is None else max_attempts,
                   timeout_s=timeout_s)

    @classmethod
    def from_description(cls, d: dict) -> S3Store:
        """Inverse of :meth:`describe`; credentials from the environment (module docstring order)."""
        if d.get("backend") != "s3" or not d.get("bucket"):
            raise ValueError(f"not an s3 store description: {d!r}")
        key, secret = _env_credentials()
        return cls(d["bucket"], region=d.get("region") or "us-east-1", endpoint_url=d.get("endpoint_url"),
                   access_key_id=key, secret_access_key=secret)

    def describe(self) -> dict:
        return {"backend": "s3", "bucket": self.bucket, "region": self.region,
                "endpoint_url": self.endpoint_url}

    def _where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint_url or 'AWS S3'}"

    def _store_error(self, e: BaseException, what: str, key: str) -> StoreUnavailable | None:
        """The StoreUnavailable/StoreMisconfigured for a missing bucket, refused credentials, an unreachable
        endpoint or a 5xx; None for other errors (a missing key, a bad request)."""
        what = f"{what} {key!r}" if key else what
        if isinstance(e, NoCredentialsError | PartialCredentialsError):
            return StoreMisconfigured(f"s3 {what}: no S3 credentials found ({e}); set {CREDENTIAL_SETTINGS}",
                                      CREDENTIAL_SETTINGS)
        if isinstance(e, BotoCoreError):
            return StoreUnavailable(f"s3 {what} in {self._where()} failed: {e}; check {ENDPOINT_SETTING}"
                                    " and that the store is up", ENDPOINT_SETTING)
        code = _error_code(e) or ""
        if not code:
            return None
        response = getattr(e, "response", None) or {}
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "NoSuchBucket":
            return StoreMisconfigured(f"{self._where()} does not exist ({what}); set {BUCKET_SETTING} to an"
                                      " existing bucket or create it", BUCKET_SETTING)
        if code in _REFUSED or status == 403:
            return StoreMisconfigured(f"{self._where()} refused the credentials ({code}, {what}); check "
                                      f"{CREDENTIAL_SETTINGS} (and {BUCKET_SETTING})", CREDENTIAL_SETTINGS)
        if status >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout"):
            return StoreUnavailable(f"s3 {what} in {self.bucket!r} failed: {code} ({status})", ENDPOINT_SETTING)
        return None

    def _call(self, what: str, key: str, fn, **kw):
        try:
            return fn(Bucket=self.bucket, **kw)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code != "NoSuchBucket" and (code in _NOT_FOUND or status == 404):
                raise ObjectNotFound(f"no object at key {key!r} in bucket {self.bucket!r}") from e
            err = self._store_error(e, what, key)
            if err is not None:
                raise err from e
            raise
        except BotoCoreError as e:
            raise self._store_error(e, what, key) from e

    def check_bucket(self) -> None:
        """HEAD the bucket: returns when it exists and the credentials may use it.

        Raises:
            StoreMisconfigured: no such bucket (``BOUNDARIES_S3_BUCKET``), credentials refused or missing.
            StoreUnavailable: the endpoint does not answer or answers 5xx (``BOUNDARIES_S3_ENDPOINT_URL``).
        """
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if status == 404 or _error_code(e) in ("404", "NoSuchBucket", "NotFound"):
                raise StoreMisconfigured(f"{self._where()} does not exist; set {BUCKET_SETTING} to an existing"
                                         " bucket or create it", BUCKET_SETTING) from e
            raise (self._store_error(e, "head bucket", "") or StoreUnavailable(
                f"HEAD {self._where()} failed: {e}", ENDPOINT_SETTING)) from e
        except BotoCoreError as e:
            raise self._store_error(e, "head bucket", "") from e

    def get_bytes(self, key: str) -> bytes:
        resp = self._call("get", key, self._client.get_object, Key=key)
        try:
            return resp["Body"].read()
        except BotoCoreError as e:
            raise TransientError(f"s3 get {key!r} in {self.bucket!r} failed while reading: {e}") from e

    def put_bytes(self, key: str, data: bytes) -> None:
        if len(data) < self.multipart_threshold_bytes:
            self._call("put", key, self._client.put_object, Key=key, Body=data)
        else:
            try:
                self._client.upload_fileobj(io.BytesIO(data), self.bucket, key, Config=self._transfer)
            except (S3UploadFailedError, ClientError, BotoCoreError) as e:
                if _error_code(e) == "NoSuchUpload" and self._has_size(key, len(data)):
                    log.warning("storage.multipart_complete_answer_lost", bucket=self.bucket, key=key,
                                size_bytes=len(data))
                    return
                if isinstance(err := self._store_error(e, "multipart put", key), StoreMisconfigured):
                    raise err from e
                raise TransientError(f"s3 multipart put {key!r} in {self.bucket!r} failed: {e}") from e

    def _has_size(self, key: str, size: int) -> bool:
        """True when ``key`` exists with ``size`` bytes (False when absent; TransientError when S3 fails)."""
        try:
            return self.size(key) == size
        except ObjectNotFound:
            return False

    def exists(self, key: str) -> bool:
        try:
            self._call("head", key, self._client.head_object, Key=key)
            return True
        except ObjectNotFound:
            return False

    def size(self, key: str) -> int:
        return int(self._call("head", key, self._client.head_object, Key=key)["ContentLength"])

    def list_keys(self, prefix: str) -> Iterator[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"]
        except (ClientError, BotoCoreError) as e:
            err = self._store_error(e, "list", prefix)
            if err is None:
                raise
            raise err from e

    def delete(self, key: str) -> None:
        self._call("delete", key, self._client.delete_object, Key=key)
