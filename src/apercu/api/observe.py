"""Every request observed in one place: its request id, its one log line, and the HTTP and upload metrics.

`Observed` wraps the Flask app as WSGI middleware rather than as Flask hooks, so that it sees every answer the
app gives (whichever hook answered first: authentication, CORS...) and adds `X-Request-ID` to all of them. The
id is the client's `X-Request-ID` when it is sane (visible ASCII, no spaces, at most 200 characters: it goes
into logs and headers as is), else a new uuid4 hex. Lines logged while the request is handled carry it
(`logs.request_context`), and so does the task its upload queues (`tasks.app.enqueue`), so the worker's lines
for the image do too. Requests the server refuses before the app runs (`api.server`: a body too large or too
slow, a malformed request) go through the same `record`.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, has_request_context, request

from apercu import logs, metrics
from apercu.api.access import UPLOAD

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

HEADER = "X-Request-ID"
VALID_ID = re.compile(r"[!-~]{1,200}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # others: "other", in metrics
MAX_LOGGED_PATH = 300
LINE = ("%(method)s %(path)s %(status)d in %(duration_ms).1f ms, %(bytes_in)d bytes in, %(bytes_out)d out, "
        "from %(client)s")
access_log = logging.getLogger("apercu.access")
log = logging.getLogger(__name__)


def request_id(sent: str | None) -> str:
    """The client's id when it is sane, else a new one."""
    return sent if sent is not None and VALID_ID.fullmatch(sent) else uuid.uuid4().hex


@dataclass(frozen=True)
class Answered:
    """One answered request, as logged and counted."""

    method: str
    path: str
    route: str  # the URL rule (`/images/<image_id>`), never the path: a bounded label
    status: int
    seconds: float
    bytes_in: int
    bytes_out: int
    request_id: str
    replayed: bool = False
    client: str = "-"  # its address: behind a trusted proxy, the one the proxy forwards (`api.forwarded`)


def record(answered: Answered) -> None:
    """Log the request's line and count it (and, for an upload, its outcome and bytes)."""
    try:
        _count(answered)
    except Exception:  # noqa: BLE001 - metrics that cannot be written (a full disk) must not fail the answer
        log.warning("could not count a request", exc_info=True)
    access_log.info(LINE, {
        "method": _printable(answered.method),
        "path": _printable(answered.path),
        "status": answered.status,
        "duration_ms": round(answered.seconds * 1000, 1),
        "bytes_in": answered.bytes_in,
        "bytes_out": answered.bytes_out,
        "request_id": answered.request_id,
        "client": answered.client,
    })


def _count(answered: Answered) -> None:
    method = answered.method if answered.method in METHODS else "other"
    metrics.REQUESTS.labels(method, answered.route, str(answered.status)).inc()
    metrics.REQUEST_SECONDS.labels(method, answered.route).observe(answered.seconds)
    if (answered.method, answered.path) == UPLOAD:
        metrics.UPLOADS.labels(str(answered.status), upload_outcome(answered.status, answered.replayed)).inc()
        metrics.UPLOAD_BYTES.inc(answered.bytes_in)


def upload_outcome(status: int, replayed: bool) -> str:
    """accepted, replayed, rejected (4xx: the request's fault), refused (503, 507: backpressure) or failed."""
    if status < 400:
        return "replayed" if replayed else "accepted"
    if status < 500:
        return "rejected"
    return "refused" if status in (503, 507) else "failed"


def refused(
    request: Any, status: int, bytes_in: int, started: float | None, answer: Callable[[tuple[str, str]], bytes]
) -> bytes:
    """Record a request the server answers itself, before the app (`api.server`): `answer(header)` makes the
    whole response, given the X-Request-ID header to add. `request` is gunicorn's parsed head, None when even the
    head was not understood."""
    sent = None
    if request is not None:
        sent = next((value for name, value in request.headers if name == HEADER.upper()), None)
    rid = request_id(sent)
    response = answer((HEADER, rid))
    record(Answered(
        method=request.method if request is not None else "-",
        path=request.path if request is not None else "-",
        route="-",  # never routed
        status=status,
        seconds=time.monotonic() - started if started is not None else 0.0,
        bytes_in=bytes_in,
        bytes_out=len(response),  # (the head included: the answer is a whole response)
        request_id=rid,
    ))
    return response


def _printable(text: str) -> str:
    """What a client sent, safe on one log line: escaped when not printable, and cut short."""
    text = text[:MAX_LOGGED_PATH]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def install(app: Flask) -> None:
    app.wsgi_app = Observed(app.wsgi_app)  # type: ignore[method-assign]


class Observed:
    """The WSGI middleware: request id in, header and log line out (see the module docstring)."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        answered = False

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal answered
            headers = [(k, v) for k, v in headers if k.lower() != HEADER.lower()] + [(HEADER, rid)]
            if not answered:
                answered = True
                _record(environ, int(status.split(" ", 1)[0]), headers, time.monotonic() - started, rid)
            return start_response(status, headers, exc_info)

        metrics.IN_FLIGHT.inc()
        try:
            with logs.request_context(rid):
                return self.app(environ, start)
        except Exception:
            if not answered:  # (Flask answers its own errors: this is the unforeseen)
                _record(environ, 500, [], time.monotonic() - started, rid)
            raise
        finally:
            metrics.IN_FLIGHT.dec()


def _record(environ: WSGIEnvironment, status: int, headers: list[tuple[str, str]], seconds: float, rid: str) -> None:
    found = {k.lower(): v for k, v in headers}
    rule = request.url_rule if has_request_context() else None
    record(Answered(
        method=environ.get("REQUEST_METHOD", "-"),
        path=environ.get("PATH_INFO", "-"),
        route=rule.rule if rule is not None else "unmatched",
        status=status,
        seconds=seconds,
        bytes_in=_int(environ.get("CONTENT_LENGTH")),
        bytes_out=_int(found.get("content-length")),
        request_id=rid,
        replayed=found.get("idempotent-replayed") == "true",
        client=environ.get("REMOTE_ADDR") or "-",
    ))


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0
