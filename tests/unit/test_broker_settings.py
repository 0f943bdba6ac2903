"""Broker connection settings of the Celery app (config/celery_app.py): every broker socket bounded,
``rediss://`` only with explicit certificate settings."""

from __future__ import annotations

import ssl

import pytest

from config.celery_app import broker_ssl_options, make_celery
from config.settings import Settings


def test_broker_and_result_backend_sockets_have_timeouts_and_health_checks():
    # given / when
    conf = make_celery(Settings(redis_url="redis://127.0.0.1:6379/0", broker_connect_timeout_s=2,
                                broker_socket_timeout_s=3, broker_health_check_interval_s=7)).conf

    # then
    t = conf.broker_transport_options
    assert (t["socket_connect_timeout"], t["socket_timeout"], t["health_check_interval"]) == (2, 3, 7)
    assert (conf.redis_socket_connect_timeout, conf.redis_socket_timeout) == (2, 3)
    assert conf.redis_backend_health_check_interval == 7
    assert conf.broker_connection_timeout == 2


@pytest.mark.parametrize("url", ["rediss://:pw-123@redis.example:6380/0", "rediss://redis.example/0?ssl_cert_reqs=maybe"])
def test_rediss_without_a_known_ssl_cert_reqs_is_refused_in_one_line(url):
    with pytest.raises(ValueError) as e:
        make_celery(Settings(redis_url=url))
    msg = str(e.value)
    assert "\n" not in msg and "BOUNDARIES_REDIS_URL=rediss://" in msg and "ssl_cert_reqs" in msg
    assert "pw-123" not in msg


def test_rediss_certificate_settings_reach_the_broker_connection():
    # given
    url = "rediss://:pw@redis.example:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem"

    # when
    app = make_celery(Settings(redis_url=url))

    # then: kombu ignores a URL's query; the options are passed as broker_use_ssl
    assert broker_ssl_options(url) == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/ca.pem"}
    assert app.connection_for_write().ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/ca.pem"}
    assert broker_ssl_options("redis://127.0.0.1:6379/0") is None
