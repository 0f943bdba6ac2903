"""Validation of tenant and video ids before they enter storage keys or SQL."""

from __future__ import annotations

import uuid

from boundaries.errors import InvalidId


def validate_uuid(value: object, field: str) -> str:
    """Return ``value`` as a canonical lower-case UUID string.

    Raises:
        InvalidId: ``value`` is not a UUID; the message names ``field`` and the value.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidId(f"{field} must be a UUID string, got {type(value).__name__} {value!r:.80}")
    try:
        parsed = uuid.UUID(value)
    except ValueError as e:
        raise InvalidId(f"{field} must be a UUID, got {value!r:.80}") from e
    # Refuse the braces/urn/no-dash spellings uuid.UUID() tolerates: keys must be canonical.
    if str(parsed) != value.lower():
        raise InvalidId(f"{field} must be a canonical UUID (8-4-4-4-12 hex), got {value!r:.80}")
    return str(parsed)
