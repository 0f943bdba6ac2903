"""``boundaries doctor``: check every configured service, one line each.

Checks, in order (each tries once, with a few seconds' timeout):

* ``redis``: ``BOUNDARIES_REDIS_URL`` is set and answers PING (password masked in the line);
* ``registry``: PostgreSQL at ``BOUNDARIES_DATABASE_URL`` answers and every migration is applied in
  ``BOUNDARIES_DB_SCHEMA`` (else: run ``boundaries migrate``) — :func:`boundaries.health.check_registry`;
* ``store``: the bucket (``BOUNDARIES_S3_BUCKET`` at ``BOUNDARIES_S3_ENDPOINT_URL``) or local directory is
  reachable and writable: a probe object under ``doctor/`` is put and deleted —
  :func:`boundaries.health.check_store`;
* ``modal``: with ``BOUNDARIES_RUNNER=modal``, the deployed class (``BOUNDARIES_MODAL_APP_NAME`` /
  ``BoundaryInference``, COMPAT.md §8) is looked up with ``modal.Cls.from_name(...).hydrate()``;
  skipped (one line) otherwise.

Output: ``ok``/``FAIL``/``skip``, the check's name and one line naming the setting or command to fix.
Exit status: 0 all ok; 78 (EX_CONFIG) when any check fails for a setting; else 69 (EX_UNAVAILABLE) when a
service does not answer.
"""

from __future__ import annotations

import argparse
import sys
import threading

from boundaries.health import CHECK_TIMEOUT_S, Check, check_registry, check_store, store_for_checks
from boundaries_cli.exits import EX_CONFIG, EX_UNAVAILABLE
from config.settings import Settings


def check_redis(settings: Settings) -> Check:
    """``BOUNDARIES_REDIS_URL`` answers PING within :data:`CHECK_TIMEOUT_S`."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from config.celery_app import masked_url, redis_py_url

    if not settings.redis_url:
        return Check("redis", "config", "BOUNDARIES_REDIS_URL is not set (the Celery broker and dedupe store)")
    shown = masked_url(settings.redis_url)
    client = redis.Redis.from_url(redis_py_url(settings.redis_url), socket_connect_timeout=CHECK_TIMEOUT_S,
                                  socket_timeout=CHECK_TIMEOUT_S, retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except (redis.RedisError, OSError, ValueError) as e:
        detail = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        return Check("redis", "unavailable", f"BOUNDARIES_REDIS_URL={shown} did not answer PING ({detail}); check"
                     " its host, port, password and redis:// vs rediss://")
    finally:
        client.close()
    return Check("redis", "ok", f"{shown} answers PING")


def check_modal(settings: Settings, timeout_s: float = 30.0) -> Check:
    """With ``BOUNDARIES_RUNNER=modal``: the deployed class answers a lookup within ``timeout_s``."""
    if settings.runner != "modal" or settings.runner_factory:
        return Check("modal", "skipped", f"BOUNDARIES_RUNNER={settings.runner}: the Modal runner is not configured")
    from worker.runners.modal import CLASS_NAME

    where = f"class {CLASS_NAME!r} of app {settings.modal_app_name!r}"
    outcome: list[BaseException | None] = []

    def lookup() -> None:
        try:
            import modal

            modal.Cls.from_name(settings.modal_app_name, CLASS_NAME).hydrate()
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - reported below as the check's outcome
            outcome.append(e)

    t = threading.Thread(target=lookup, name="doctor-modal", daemon=True)
    t.start()
    t.join(timeout_s)
    if not outcome:
        return Check("modal", "unavailable", f"looking up {where} got no answer within {timeout_s:g} s; check the"
                     " network and MODAL_TOKEN_ID/MODAL_TOKEN_SECRET")
    e = outcome[0]
    if e is None:
        return Check("modal", "ok", f"{where} is deployed")
    text = " ".join(f"{type(e).__name__}: {e}".split())[:200]
    name = type(e).__name__
    if name == "NotFoundError":
        return Check("modal", "config", f"{where} not found ({text}); run `modal deploy modal_gpu/app.py` or set"
                     " BOUNDARIES_MODAL_APP_NAME")
    if name in ("AuthError", "InvalidError"):
        return Check("modal", "config", f"Modal refused the lookup of {where} ({text}); set MODAL_TOKEN_ID/"
                     "MODAL_TOKEN_SECRET (`modal token new`)")
    return Check("modal", "unavailable", f"looking up {where} failed ({text}); check the network and Modal's status")


def run_checks(settings: Settings) -> list[Check]:
    """Every check of the module docstring, in order."""
    checks = [check_redis(settings), check_registry(settings)]
    try:
        store = store_for_checks(settings)
    except ValueError as e:
        checks.append(Check("store", "config", " ".join(str(e).split())[:300]))
    else:
        checks.append(check_store(store, write=True))
    checks.append(check_modal(settings))
    return checks


def exit_status(checks: list[Check]) -> int:
    """0 all ok (or skipped); 78 when any failed for a setting; else 69."""
    if any(c.kind == "config" for c in checks):
        return EX_CONFIG
    if any(c.kind == "unavailable" for c in checks):
        return EX_UNAVAILABLE
    return 0


def cmd_doctor(args) -> int:
    checks = run_checks(Settings())
    for c in checks:
        print(c.line(), flush=True)
    status = exit_status(checks)
    if status:
        failed = [c.name for c in checks if not c.ok]
        print(f"boundaries doctor: {len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
    return status


def add_command(sub) -> None:
    d = sub.add_parser(
        "doctor", help="check every configured service, one line each: Redis, PostgreSQL and its migrations, the"
        " object store, Modal (exit 0 all ok, 78 a setting to fix, 69 a service down)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    d.set_defaults(func=cmd_doctor)
