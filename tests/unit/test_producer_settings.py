"""Producer settings: timeouts that must nest are refused otherwise, naming both; secrets are stripped."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from config.settings import Settings


@pytest.mark.parametrize("overrides,names", [
    ({"producer_redis_timeout_s": 2.0}, ("producer_redis_timeout_s", "producer_deadline_s")),
    ({"producer_db_timeout_s": 3.0}, ("producer_db_timeout_s", "producer_deadline_s")),
    ({"dedupe_pending_ttl_s": 2}, ("producer_deadline_s", "dedupe_pending_ttl_s")),
    ({"resend_unsent_after_s": 1.5}, ("producer_deadline_s", "resend_unsent_after_s")),
    ({"producer_deadline_s": 120.0}, ("producer_deadline_s", "dedupe_pending_ttl_s")),
])
def test_producer_timeouts_must_nest(overrides, names):
    with pytest.raises(ValidationError) as e:
        Settings(**overrides)
    message = str(e.value)
    assert all(n in message for n in names), message


def test_defaults_nest_and_secrets_lose_surrounding_whitespace():
    s = Settings(webhook_secret=SecretStr("  s3cret-from-a-file\n"), webhook_hmac_secret=SecretStr("whsec_abc\n"))
    assert s.webhook_secret.get_secret_value() == "s3cret-from-a-file"
    assert s.webhook_hmac_secret.get_secret_value() == "whsec_abc"
    assert s.producer_redis_timeout_s < s.producer_deadline_s < s.dedupe_pending_ttl_s


@pytest.mark.parametrize("field", ["reconcile_interval_s", "dedupe_ttl_s", "webhook_timestamp_tolerance_s"])
def test_intervals_must_be_positive(field):
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: 0})
