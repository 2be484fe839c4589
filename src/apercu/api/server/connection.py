"""A client connection, and the receiving of its current request from the bytes the event loop reads.

`Conn.receive` takes each read as it comes: the head until it ends (parsed, then asked of the access gate
before a byte of the body is taken), then the body, de-chunked when it is chunked, into its `bodies.Body`, up to
the upload limit. It returns True once the request is whole, with the bytes that came after it kept for the next
one (pipelining). What it refuses it raises as an ApiError, which the worker answers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from gunicorn.http.body import ChunkedReader
from gunicorn.util import unquote_to_wsgi_str
from gunicorn.workers.gthread import TConn

from apercu.api.access import Gate, Header
from apercu.api.errors import ApiError
from apercu.api.forwarded import from_trusted_proxy
from apercu.api.server.bodies import Body, body_for
from apercu.api.server.chunked import Dechunker
from apercu.api.server.head import head_end, header_of, parse_head

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True)
class Intake:
    """What a worker process receives requests by: its settings' limits, the gate, and where bodies go."""

    cfg: Any  # gunicorn's config, for its parser
    request_timeout: float  # seconds for a request to arrive...
    seconds_per_byte: float  # ...plus this much per byte received
    max_body: int
    too_large: str  # the 413 message
    gate: Gate
    new_upload_file: Callable[[], IO[bytes]]

    def refuse_too_large(self) -> ApiError:
        return ApiError(413, self.too_large)


class Conn(TConn):  # type: ignore[misc, unused-ignore]  # gunicorn has no type stubs
    """A client connection, and what the event loop knows of the request it is receiving."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.inbox = bytearray()  # head bytes so far; between requests, what the client sent ahead
        self.scanned = 0  # how much of the inbox was searched for the end of the head
        self.count = 0  # requests on this connection
        self.watched = False  # registered with the event loop (not with a thread)
        self.closed = False
        self.reset()

    def reset(self) -> None:
        """Between requests: nothing received of the next one yet."""
        self.request: Any = None
        self.body: Body | None = None
        self.left = 0  # Content-Length bytes still to come
        self.dechunker: Dechunker | None = None
        self.size = 0  # body bytes received (decoded, for a chunked body)
        self.started: float | None = None  # when the current request's first byte came
        self.received = 0  # bytes of it received, head included
        self.deadline = 0.0
        self.lingering = False
        self.drained = 0

    def release(self) -> None:
        """Drop the body: its spool file, or the part files the application did not commit."""
        if self.body is not None:
            self.body.discard()
        self.reset()

    def receive(self, data: bytes | memoryview, intake: Intake) -> bool:
        """New bytes of the current request (valid until the next read): move its deadline, then complete the
        head, then the body; True when the request is whole."""
        if self.started is None:
            self.started = time.monotonic()
        self.received += len(data)
        self.deadline = self.started + intake.request_timeout + self.received * intake.seconds_per_byte
        if self.request is None:
            self.inbox += data
            end = head_end(self.inbox, self.scanned)
            self.scanned = len(self.inbox)
            if not end:
                return False
            data = self._start_request(end, intake)
        rest = self._receive_body(data, intake)
        if rest is None:
            return False
        self.inbox = bytearray(rest)
        return True

    def _start_request(self, end: int, intake: Intake) -> bytes:
        """Parse the head, admit it, open its body; returns the bytes that follow the head."""
        head, rest = bytes(self.inbox[:end]), self.inbox[end:]
        self.inbox = bytearray()
        self.scanned = 0
        self.count += 1
        request, buffered = parse_head(intake.cfg, head, self.client, self.count)
        self.request = request
        if isinstance(request.body.reader, ChunkedReader):
            self.dechunker = Dechunker()
        else:
            self.left = request.body.reader.length
        has_body = self.dechunker is not None or self.left > 0
        header = header_of(request)
        if has_body:
            admit(request, header, intake.gate)  # first: a caller without a key learns nothing more
        if self.left > intake.max_body:
            raise intake.refuse_too_large()  # from the header alone, before a byte of the body
        if request._expected_100_continue and has_body:
            try:
                self.sock.send(CONTINUE)  # the first bytes sent on this request: the socket buffer has room
            except OSError:
                pass  # the client is gone: the next read says so
        request._expected_100_continue = False
        self.body = body_for(header("Content-Type") if has_body else None, intake.cfg.tmp_upload_dir,
                             intake.new_upload_file)
        return buffered + rest

    def _receive_body(self, data: bytes | memoryview, intake: Intake) -> bytes | memoryview | None:
        """Store body bytes; None while the body goes on, else what follows it (the client's next request)."""
        if self.dechunker is not None:
            decoded = self.dechunker.feed(bytes(data))
            for piece in decoded.pieces:
                self._write_body(piece, intake)
            return decoded.rest
        size = min(self.left, len(data))
        self._write_body(memoryview(data)[:size], intake)
        self.left -= size
        return None if self.left else data[size:]

    def _write_body(self, piece: memoryview, intake: Intake) -> None:
        self.size += len(piece)
        if self.size > intake.max_body:
            raise intake.refuse_too_large()  # a chunked body: stop reading at the limit
        assert self.body is not None
        self.body.write(piece)

    def complete(self) -> None:
        """The request is whole: its body becomes its input, of a known length, for a thread to run it."""
        request, body = self.request, self.body
        assert body is not None
        request.body = body.stream()
        if self.dechunker is not None:
            request.headers = [h for h in request.headers if h[0] != "TRANSFER-ENCODING"]
            request.headers.append(("CONTENT-LENGTH", str(self.size)))


def admit(request: Any, header: Header, gate: Gate) -> None:
    """The application's access rule (API key, backpressure: `api.access`), on the head of a request with a
    body: refused, it is answered before a byte of that body is received or a `100 Continue` sent, and what the
    client still sends is drained and dropped, never stored. A bodiless request has nothing to protect: the
    application's own before_request hook applies the same rule to it, and it keeps its connection, its CORS
    headers and everything else an answer from the application gets. So does a request from a trusted proxy
    (`api.forwarded`): one that buffers bodies (nginx's default) sends the whole body before it reads an answer,
    so a refusal sent early would reach it as a reset connection (a 502 for its client); its body arrives at once
    from the proxy, which bounded it, so it is received, and the hook refuses it."""
    peer = request.peer_addr  # the client's address, as gunicorn makes REMOTE_ADDR of it
    address = peer[0] if isinstance(peer, tuple) else str(peer)
    if from_trusted_proxy(gate.settings.trusted_proxies, address):
        return
    refusal = gate.check(request.method, unquote_to_wsgi_str(request.path), header, address)
    if refusal is not None:
        raise refusal.with_headers(*gate.cors.response_headers(header("Origin")))
