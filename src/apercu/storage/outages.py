"""The one place that says whether an exception means a dependency is away, and which one.

A dependency that cannot be reached, or that answers with a server error, is an outage: the work that needed
it is still good and must be tried again later (the worker retries, then leaves the image for recovery; the web
can refuse with 503). Everything else is a bug of ours or a bad input, handled where it happens. Keeping the list
here means the web and the worker can never disagree about what an outage is.

What counts, per dependency:
- storage: botocore's connection, endpoint and timeout errors (`ConnectionError`: EndpointConnectionError,
  ConnectTimeoutError, SSLError, ProxyConnectionError; `HTTPClientError`: ConnectionClosedError,
  ReadTimeoutError, ResponseStreamingError), an S3 answer with a 5xx status or a throttling/server code, and an
  OSError of the local store (a full disk, a read-only or vanished mount, an I/O error);
- catalog: SQLAlchemy's OperationalError and InterfaceError (what the DBAPI raises for a lost or refused
  connection, a lock timeout, a server shutting down), any DBAPI error that invalidated its connection, and a
  pool that gave no connection in time;
- broker: kombu's OperationalError (what kombu raises when the transport is unreachable), py-amqp's connection
  errors (kombu's `ConnectionError`), and redis-py's connection and timeout errors.
An OSError is the local store's: the other clients wrap their sockets' errors in their own exceptions above.

A full disk (ENOSPC, a quota's EDQUOT, SQLite's SQLITE_FULL "database or disk is full") is still its dependency's
outage (the local store's, or the SQLite catalog's), but `out_of_space` tells it apart: the web answers it 507
rather than 503, and it is no reason to refuse reads, which still work.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import sys
from collections.abc import Iterator
from typing import Any, Literal

import kombu.exceptions
import sqlalchemy.exc

Dependency = Literal["storage", "catalog", "broker"]
# S3 error codes that say "the server is struggling, ask again", whatever HTTP status a compatible server sends.
S3_UNAVAILABLE_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "503", "500"})
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
PRIMARY_CODE = 0xFF  # an SQLite extended result code's primary code is its low byte
_CATALOG: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # the pool's: every connection is stuck on a server that does not answer
)
_BROKER: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    kombu.exceptions.ConnectionError,  # py-amqp's, which kombu re-exports
)
# The optional clients' errors (extras s3 and redis), by module and class name: see `_loaded`.
_BOTO = "botocore.exceptions"
_BOTO_STORAGE = ("ConnectionError", "HTTPClientError")
_REDIS = "redis.exceptions"
_REDIS_BROKER = ("ConnectionError", "TimeoutError")


class DependencyUnavailable(Exception):
    """Raised where code already knows a dependency is away (a probe, a circuit breaker) and wants it treated
    like any other outage of that dependency."""

    def __init__(self, dependency: Dependency, detail: str = "") -> None:
        super().__init__(f"{dependency} unavailable" + (f": {detail}" if detail else ""))
        self.dependency: Dependency = dependency


def classify(exc: BaseException) -> Dependency | None:
    """The dependency whose outage `exc` (or an exception it was raised from) is, or None: not an outage."""
    for seen in _chain(exc):
        found = _own(seen)
        if found is not None:
            return found
    return None


def out_of_space(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) says a disk or a quota is full: an outage that is
    answered 507 Insufficient Storage, and that frees itself as soon as space does."""
    return any(_no_space(seen) for seen in _chain(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it was raised from (SQLAlchemy's errors are raised from the driver's), and so on."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__


def _no_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in NO_SPACE_ERRNOS
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) & PRIMARY_CODE) == sqlite3.SQLITE_FULL
    return False


def _loaded(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The exception classes `names` of `module` if it was imported, else none. An optional client (boto3, redis-py)
    may not be installed, and a process that does not use it does not import it: either way none of its exceptions
    can exist, so there is nothing of it to recognise, and nothing to import here."""
    found = sys.modules.get(module)
    return tuple(getattr(found, name) for name in names) if found is not None else ()


def _own(exc: BaseException) -> Dependency | None:
    if isinstance(exc, DependencyUnavailable):
        return exc.dependency
    if isinstance(exc, _loaded(_BOTO, "ClientError")):
        return "storage" if _server_error(exc) else None
    if isinstance(exc, _CATALOG):
        return "catalog"
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return "catalog"  # a disconnect the dialect recognised, whatever class the DBAPI gave it
    if isinstance(exc, _BROKER + _loaded(_REDIS, *_REDIS_BROKER)):
        return "broker"
    if isinstance(exc, (*_loaded(_BOTO, *_BOTO_STORAGE), OSError)):
        return "storage"
    return None


def _server_error(exc: Any) -> bool:
    """An S3 answer that says the server, not the request, is at fault (a 404 or a 403 is not an outage)."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    code = exc.response.get("Error", {}).get("Code", "")
    return int(status) >= 500 or code in S3_UNAVAILABLE_CODES


def log_failure(logger: logging.Logger, exc: BaseException, message: str, *args: object) -> None:
    """Log work that failed and is left for later (a sweep, the next request): a dependency's outage is no bug,
    so one warning line naming it without a traceback, however often it happens; anything else, which may be a
    bug of ours, is logged with its traceback."""
    dependency = classify(exc)
    if dependency is None:
        logger.error(message, *args, exc_info=exc)
    else:
        logger.warning(message + " (%s unavailable: %s)", *args, dependency, type(exc).__name__)
