"""Embedded services of the main job stop when the job ends, even with clients still connected."""

from contextlib import ExitStack

import psutil
import redis
from pydantic import SecretStr

from boundaries_cli.embedded import with_embedded_services
from config.celery_app import redis_py_url
from config.settings import Settings


def test_embedded_redis_is_gone_after_the_stack_closes_despite_open_clients(tmp_path):
    settings = Settings(state_dir=tmp_path, database_url=SecretStr("postgresql://unused"))
    with ExitStack() as stack:
        s = with_embedded_services(settings, stack)
        clients = [redis.Redis.from_url(redis_py_url(s.redis_url)) for _ in range(3)]
        assert all(c.ping() for c in clients)
        pid = int(clients[0].info()["process_id"])
        assert psutil.pid_exists(pid)

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
