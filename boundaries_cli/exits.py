"""Exit statuses of the ``boundaries`` CLI by kind of failure (sysexits.h), and the one line it prints.

======  =====================  ==============================================================================
status  kind                   raised as
======  =====================  ==============================================================================
0       done
1       a command's own "not everything done" (``dlq replay`` left some, ``run``'s job failed, ...)
2       usage                  argparse: a bad argument or option (before any service is touched)
65      data (EX_DATAERR)      bad input: a PermanentError (bad id, layout, frames, checkpoint), a ValueError
                               that names no setting, an input file that cannot be read
69      unavailable            a service does not answer: Redis/broker, PostgreSQL, the object store, Modal
        (EX_UNAVAILABLE)       (RegistryUnavailable, StoreUnavailable, TransientError, psycopg/redis/kombu/
                               botocore connection errors, ConnectionError)
70      internal (EX_SOFTWARE) anything else (a bug): the line says to rerun with ``--debug``
78      config (EX_CONFIG)     a missing or invalid setting: a pydantic ValidationError of Settings, a
                               ConfigError, StoreMisconfigured (no such bucket, refused credentials), a
                               ValueError naming a ``BOUNDARIES_*`` variable (timing refusals, rediss://
                               without ssl_cert_reqs), a registry without its tables (``boundaries migrate``)
130     interrupted            Ctrl-C (SIGINT): one line at most
141     broken pipe            stdout closed early (``boundaries dlq list | head -1``): nothing printed
======  =====================  ==============================================================================

Exception types are mapped here once (:func:`classify`); libraries are looked up in ``sys.modules`` only,
so classifying never imports one that the failed command did not load.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from boundaries.errors import (
    ConfigError,
    PermanentError,
    RegistryError,
    RegistryUnavailable,
    StoreMisconfigured,
    StoreUnavailable,
    TransientError,
)

EX_USAGE = 2  # argparse's own status
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CONFIG = 78
EX_INTERRUPTED = 130  # 128 + SIGINT
EX_BROKEN_PIPE = 141  # 128 + SIGPIPE

_SECRET_FIELDS = ("secret", "password", "database_url", "redis_url", "access_key")


@dataclass(frozen=True)
class Failure:
    """``code``: the exit status; ``message``: one line (no newline), naming the setting or value to fix."""

    code: int
    message: str


def one_line(text: object, limit: int = 600) -> str:
    """``text`` with every run of whitespace (newlines too) made one space, cut to ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def settings_error_message(e) -> str:
    """One line for a pydantic ValidationError of Settings: each error as ``BOUNDARIES_FIELD=value: why``
    (values of secret and URL fields are not shown)."""
    parts = []
    for err in e.errors(include_url=False):
        loc = [str(p) for p in err.get("loc", ())]
        msg = re.sub(r"^(Value|Assertion) error, ", "", str(err.get("msg", "invalid")))
        if not loc:  # a model validator (e.g. the producer's timing): its message names the settings
            parts.append(msg)
            continue
        field = loc[0]
        env = f"BOUNDARIES_{field.upper()}"
        if any(s in field for s in _SECRET_FIELDS):
            parts.append(f"{env}: {msg}")
        else:
            parts.append(f"{env}={err.get('input')!r}: {msg}")
    return "invalid settings: " + "; ".join(parts)


def _is(e: BaseException, module: str, *names: str) -> bool:
    """``e`` is an instance of ``module.name`` for one of ``names`` (only when ``module`` is loaded)."""
    mod = sys.modules.get(module)
    return mod is not None and any(isinstance(e, getattr(mod, n, ())) for n in names)


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def classify(e: BaseException) -> Failure:
    """The exit status and one-line message for ``e`` (module docstring table)."""
    text = one_line(e) or type(e).__name__
    if _is(e, "pydantic", "ValidationError"):
        if getattr(e, "title", "") == "Settings":
            return Failure(EX_CONFIG, one_line(settings_error_message(e)))
        return Failure(EX_DATAERR, text)
    if _is(e, "pydantic_settings", "SettingsError"):  # a value the environment source cannot parse (JSON)
        field = re.search(r'field "(\w+)"', str(e))
        env = f"BOUNDARIES_{field.group(1).upper()}" if field else "a BOUNDARIES_* variable"
        return Failure(EX_CONFIG, f"invalid settings: {env} is not valid JSON for its type (e.g. "
                                  f'["a", "b"] for a list): {text}')
    if isinstance(e, ConfigError | StoreMisconfigured):
        return Failure(EX_CONFIG, text)
    if isinstance(e, RegistryUnavailable):
        return Failure(EX_UNAVAILABLE, f"{text} (check BOUNDARIES_DATABASE_URL)")
    if isinstance(e, StoreUnavailable | TransientError):
        return Failure(EX_UNAVAILABLE, text)
    if isinstance(e, RegistryError):
        if any(_is(c, "psycopg.errors", "UndefinedTable", "InvalidSchemaName", "UndefinedColumn")
               for c in _chain(e)):
            return Failure(EX_CONFIG, f"{text}; run `boundaries migrate` (BOUNDARIES_DATABASE_URL, "
                                      "BOUNDARIES_DB_SCHEMA)")
        return Failure(EX_SOFTWARE, text)
    if isinstance(e, PermanentError):
        return Failure(EX_DATAERR, text)
    if _is(e, "psycopg", "OperationalError", "InterfaceError"):
        return Failure(EX_UNAVAILABLE, f"PostgreSQL unavailable: {text} (check BOUNDARIES_DATABASE_URL)")
    if _is(e, "redis.exceptions", "ConnectionError", "TimeoutError") or _is(e, "kombu.exceptions",
                                                                             "OperationalError"):
        return Failure(EX_UNAVAILABLE, f"Redis unavailable: {text} (check BOUNDARIES_REDIS_URL)")
    if _is(e, "botocore.exceptions", "NoCredentialsError", "PartialCredentialsError"):
        return Failure(EX_CONFIG, f"{text} (set BOUNDARIES_S3_ACCESS_KEY_ID/BOUNDARIES_S3_SECRET_ACCESS_KEY)")
    if _is(e, "botocore.exceptions", "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
           "ConnectionClosedError"):
        return Failure(EX_UNAVAILABLE, f"object store unavailable: {text} (check BOUNDARIES_S3_ENDPOINT_URL)")
    if _is(e, "botocore.exceptions", "ClientError"):
        code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return Failure(EX_CONFIG, f"{text} (set BOUNDARIES_S3_BUCKET to an existing bucket)")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return Failure(EX_CONFIG, f"{text} (check BOUNDARIES_S3_ACCESS_KEY_ID/BOUNDARIES_S3_SECRET_ACCESS_KEY)")
        return Failure(EX_UNAVAILABLE, text)
    if _is(e, "modal.exception", "NotFoundError", "AuthError"):
        return Failure(EX_CONFIG, f"Modal: {text} (`modal deploy modal_gpu/app.py`, MODAL_TOKEN_ID/MODAL_TOKEN_SECRET)")
    if _is(e, "modal.exception", "ConnectionError", "TimeoutError"):
        return Failure(EX_UNAVAILABLE, f"Modal unavailable: {text}")
    if type(e).__name__ == "QueueUnavailable":  # producer.dispatch: broker or registry down
        return Failure(EX_UNAVAILABLE, f"{text} (check BOUNDARIES_REDIS_URL and BOUNDARIES_DATABASE_URL)")
    if isinstance(e, ConnectionError | TimeoutError):
        return Failure(EX_UNAVAILABLE, text)
    if isinstance(e, ModuleNotFoundError):
        return Failure(EX_CONFIG, f"{text}: this command needs an optional dependency; install the extra that"
                                  " provides it (e.g. scripts/setup.sh gpu for torch)")
    if isinstance(e, ValueError):
        return Failure(EX_CONFIG if "BOUNDARIES_" in str(e) else EX_DATAERR, text)
    if isinstance(e, FileNotFoundError | IsADirectoryError | NotADirectoryError | FileExistsError):
        return Failure(EX_DATAERR, text)
    return Failure(EX_SOFTWARE, f"internal error: {type(e).__name__}: {text} (rerun with --debug or "
                                "BOUNDARIES_DEBUG=1 for the traceback)")


def exit_code_for(e: BaseException) -> int:
    """The exit status of ``e`` (module docstring table)."""
    return classify(e).code
