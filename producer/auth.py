"""Webhook authentication (COMPAT.md §7): a shared Bearer secret, and optionally a Standard Webhooks
HMAC signature.

- ``Authorization: Bearer <settings.webhook_secret>``, compared with :func:`hmac.compare_digest`.
- When ``settings.webhook_hmac_secret`` is set (``whsec_<base64 key>`` or raw base64), the headers
  ``webhook-id``, ``webhook-timestamp`` (unix seconds) and ``webhook-signature``
  (space-separated ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``) are required; a
  timestamp further than ``webhook_timestamp_tolerance_s`` from now is rejected (replay guard).

Secrets are never logged or put into error messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

from pydantic import SecretStr

from boundaries.errors import PermanentError


class Unauthorized(PermanentError):
    """The request is not from our trigger (HTTP 401). The message says which check failed."""

    error_type = "unauthorized"


def check_bearer(authorization: str | None, secret: SecretStr) -> None:
    """Raises Unauthorized unless ``authorization`` is ``Bearer <secret>`` (constant-time compare)."""
    if not authorization:
        raise Unauthorized("Authorization header missing")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization header is not 'Bearer <secret>'")
    expected = secret.get_secret_value().encode()
    if not hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), expected):
        raise Unauthorized("Bearer secret does not match")


def _hmac_key(secret: SecretStr) -> bytes:
    raw = secret.get_secret_value()
    if raw.startswith("whsec_"):
        raw = raw[len("whsec_"):]
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return raw.encode()  # not base64: use the text itself as the key


def sign(secret: SecretStr, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value (``v1,<base64>``) for ``body`` (what a sender computes)."""
    mac = hmac.new(_hmac_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def check_signature(headers: Mapping[str, str], body: bytes, secret: SecretStr, *,
                    tolerance_s: int, now: float | None = None) -> None:
    """Verify a Standard Webhooks signature of ``body`` (bytes as received).

    Raises:
        Unauthorized: a header is missing, the timestamp is not an integer or is more than
            ``tolerance_s`` seconds away from ``now``, or no ``v1`` signature matches.
    """
    msg_id = headers.get("webhook-id")
    ts_text = headers.get("webhook-timestamp")
    sig_header = headers.get("webhook-signature")
    for name, value in (("webhook-id", msg_id), ("webhook-timestamp", ts_text),
                        ("webhook-signature", sig_header)):
        if not value:
            raise Unauthorized(f"{name} header missing")
    try:
        ts = int(ts_text)
    except ValueError as e:
        raise Unauthorized(f"webhook-timestamp must be unix seconds, got {ts_text[:40]!r}") from e
    now = time.time() if now is None else now
    if abs(int(now) - ts) > tolerance_s:  # int arithmetic: a 400-digit timestamp must not overflow a float
        raise Unauthorized(f"webhook-timestamp {ts} is more than {tolerance_s} s from now ({int(now)})")
    expected = sign(secret, msg_id, ts, body).encode()
    for candidate in sig_header.split():
        if hmac.compare_digest(candidate.encode("utf-8", "surrogateescape"), expected):
            return
    raise Unauthorized("webhook-signature does not match")
