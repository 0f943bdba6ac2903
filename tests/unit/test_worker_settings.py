"""Worker reliability settings: acks_late, reject_on_worker_lost, prefetch 1, one visibility timeout
everywhere Celery reads it, and the timing relations that keep a job from running twice or being lost."""

from __future__ import annotations

import pytest

from config.celery_app import check_timing, make_celery
from config.settings import Settings
from worker.tasks import backoff_s

REDIS = "redis://127.0.0.1:6379/15"  # never contacted: building the app does not connect


def test_defaults_hold_every_timing_relation():
    s = Settings()

    check_timing(s)

    longest_job_s = max(s.local_runner_deadline_s, s.modal_call_deadline_s)
    assert longest_job_s < s.task_soft_time_limit_s < s.task_time_limit_s < s.visibility_timeout_s
    assert s.heartbeat_interval_s < s.heartbeat_stale_s < s.visibility_timeout_s
    assert s.retry_backoff_base_s <= s.retry_backoff_max_s


def test_celery_app_acks_late_prefetch_one_and_one_visibility_timeout():
    s = Settings(redis_url=REDIS, visibility_timeout_s=7200, task_time_limit_s=7000, task_soft_time_limit_s=6900,
                 local_runner_deadline_s=6000, modal_call_deadline_s=6000, broker_restore_interval_s=5)

    conf = make_celery(s).conf

    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 7200
    assert conf.result_backend_transport_options["visibility_timeout"] == 7200
    assert conf.broker_transport_options["unacked_restore_interval"] == 5
    assert conf.broker_transport_options["unacked_restore_throttle"] == 1
    assert conf.task_time_limit == 7000 < 7200


@pytest.mark.parametrize(("overrides", "names"), [
    ({"visibility_timeout_s": 3600, "task_time_limit_s": 3600, "task_soft_time_limit_s": 3000,
      "local_runner_deadline_s": 2000.0, "modal_call_deadline_s": 2000.0, "heartbeat_stale_s": 300.0},
     ("task_time_limit_s", "visibility_timeout_s")),
    ({"local_runner_deadline_s": 20000.0}, ("local_runner_deadline_s", "task_soft_time_limit_s")),
    ({"modal_call_deadline_s": 20000.0}, ("modal_call_deadline_s", "task_soft_time_limit_s")),
    ({"heartbeat_stale_s": 5 * 3600.0}, ("heartbeat_stale_s", "visibility_timeout_s")),
    ({"heartbeat_interval_s": 400.0}, ("heartbeat_interval_s", "heartbeat_stale_s")),
    ({"retry_backoff_base_s": 700.0}, ("retry_backoff_base_s", "retry_backoff_max_s")),
])
def test_unsafe_timing_is_refused_naming_both_settings(overrides, names):
    s = Settings(redis_url=REDIS, **overrides)

    with pytest.raises(ValueError) as e:
        make_celery(s)

    for name in names:
        assert name in str(e.value)


def test_a_back_off_longer_than_the_visibility_timeout_and_the_sweep_is_accepted():
    # retries wait as registry rows (retry_at), not as messages a worker holds: nothing is redelivered early
    s = Settings(redis_url=REDIS, retry_backoff_max_s=6 * 3600.0, sweep_queued_after_s=100.0)

    make_celery(s)  # no ValueError

    assert s.retry_backoff_max_s > s.visibility_timeout_s and s.retry_backoff_max_s > s.sweep_queued_after_s


def test_backoff_is_exponential_jittered_and_capped():
    import random

    rng = random.Random(7)  # noqa: S311 - jitter samples, not crypto
    samples = {a: [backoff_s(a, 5.0, 600.0, rng) for _ in range(200)] for a in (1, 2, 3, 10)}

    assert all(2.5 <= x <= 5.0 for x in samples[1])
    assert all(5.0 <= x <= 10.0 for x in samples[2])
    assert all(10.0 <= x <= 20.0 for x in samples[3])
    assert all(300.0 <= x <= 600.0 for x in samples[10])  # capped: d = 600, never above
    assert len({round(x, 6) for x in samples[3]}) > 100  # jittered, not a constant
