"""A request's head: where it ends in what a connection received, and its parse by gunicorn's own parser.

The event loop receives a head in pieces; `head_end` finds its end without rescanning what was searched
before, and refuses a head that grows past HEAD_LIMIT without ending (414 while the request line has not ended,
431 after). `parse_head` hands the complete head to gunicorn's `Request` (every check of gunicorn's applies:
line and field limits, header names, framing) and turns its errors into the API's.
"""

from __future__ import annotations

from typing import Any

from gunicorn.http import errors as http_errors
from gunicorn.http.message import Request
from gunicorn.http.unreader import Unreader

from apercu.api.access import Header
from apercu.api.errors import NOTHING_ASKED, ApiError, Asked

HEAD_LIMIT = 32 * 1024  # request line and headers together; gunicorn's own limits (line, field) apply within it
MAX_MESSAGE = 300  # characters of a parser's message repeated to the client (it may quote the request)
STATUS_OF = {
    http_errors.LimitRequestLine: 414,
    http_errors.LimitRequestHeaders: 431,
    http_errors.ExpectationFailed: 417,
    http_errors.UnsupportedTransferCoding: 501,
    http_errors.ForbiddenProxyRequest: 403,
    http_errors.ConfigurationProblem: 500,
}


def head_end(inbox: bytearray, scanned: int) -> int:
    """Where the head ends in `inbox` (after its blank line), 0 if it has not yet; `scanned` bytes of it were
    searched before. A bare-LF end counts: the parser then refuses it."""
    start = max(0, scanned - 3)
    crlf = inbox.find(b"\r\n\r\n", start)
    lf = inbox.find(b"\n\n", start, crlf if crlf >= 0 else len(inbox))
    if lf >= 0:
        return lf + 2
    if crlf >= 0:
        return crlf + 4
    if len(inbox) > HEAD_LIMIT:
        if b"\n" in inbox:
            raise ApiError(431, f"the request headers are larger than {HEAD_LIMIT} bytes")
        raise ApiError(414, f"the request line is longer than {HEAD_LIMIT} bytes")
    return 0


class Received(Unreader):  # type: ignore[misc, unused-ignore]  # gunicorn has no type stubs
    """Bytes already received, given to gunicorn's parser once and then forgotten: the request object keeps its
    unreader, which must not keep the first read of the body alive with it."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data

    def chunk(self, size_hint: int | None = None) -> bytes:
        data, self.data = self.data, b""
        return data


def parse_head(cfg: Any, head: bytes, client: Any, number: int) -> tuple[Any, bytes]:
    """gunicorn's Request for a complete head (the `number`th on its connection), and what the parser left
    unread of it (it is handed the head alone, so that is normally nothing). Raises ApiError for what the parser
    refuses."""
    unreader = Received(head)
    try:
        request = Request(cfg, unreader, client, number)
    except (http_errors.ParseException, http_errors.NoMoreData) as exc:
        raise ApiError(STATUS_OF.get(type(exc), 400), str(exc)[:MAX_MESSAGE]) from exc
    return request, unreader.take_buffered()


def header_of(request: Any) -> Header:
    """A header of gunicorn's parsed head by name, case-insensitive; the first of a repeated one counts."""
    headers: dict[str, str] = {}
    for name, value in request.headers:
        headers.setdefault(name, value)  # gunicorn's names are upper-case
    return lambda name: headers.get(name.upper())


def asked_of(request: Any) -> Asked:
    """What a request the server answers itself asks of its error (`errors.Asked`): nothing when its head was not
    understood (None); every Accept field it sent, joined as RFC 9110 section 5.3 says they combine."""
    if request is None:
        return NOTHING_ASKED
    accept = ", ".join(value for name, value in request.headers if name == "ACCEPT")
    return Asked(accept or None, request.path)
