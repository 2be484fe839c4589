"""The production HTTP server: gunicorn's threaded worker, with each request received whole before a thread runs it.

gunicorn's gthread worker gives a connection to one of its threads as soon as bytes arrive, and the thread then
blocks reading the body: 32 uploads stalled mid-body held every thread of the default two processes and the
service stopped answering (issue 7). `BufferingWorker` keeps gthread's processes, thread pool, HTTP parser and
WSGI handling, but receives the head and the body of every request in the worker's event loop, as nginx's
request buffering does: the body goes to memory up to SPOOL_IN_MEMORY bytes and beyond that to an unnamed file
on the data volume (an upload is never whole in memory), and only a complete request is queued for a thread,
with that file as its `wsgi.input`. A stalled client costs a socket and a file, never a thread, and the
connections of a process are capped (`web_connections`), so stalled sockets cannot exhaust descriptors either.

A request has `request_timeout` seconds to arrive, plus one second per `request_min_rate` bytes received (so a
large upload on a slow link is fine and a trickle is not); past that it is answered 408 and closed. Everything the
server refuses before the application runs (a malformed request line, headers too large, a body larger than the
upload limit, shorter than its Content-Length, or too slow) is answered with the API's JSON errors. So is a
request with a body that the application's access rule (`api.access.Gate`: API key, backpressure) refuses from
its head alone: its body is never received, let alone written to disk.

This builds on gunicorn internals (ThreadWorker's accept, enqueue_req, handle, handle_request, finish_request,
murder_keepalived and _cap_keepalive; TConn; the Request parser and Unreader), hence the exact pin in
pyproject.toml: on an upgrade, read gunicorn/workers/gthread.py again before anything else.
"""

from __future__ import annotations

import errno
import io
import logging
import resource
import selectors
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.http import errors as http_errors
from gunicorn.http.body import CHUNK_EXT_RE, ChunkedReader
from gunicorn.http.message import Request
from gunicorn.http.unreader import Unreader
from gunicorn.util import unquote_to_wsgi_str
from gunicorn.workers.gthread import TConn, ThreadWorker
from werkzeug.http import parse_options_header

from apercu import metrics
from apercu.api import access, create_app, multipart, observe
from apercu.api.errors import error_body
from apercu.api.uploads import MULTIPART_SLACK, staging, too_large_message
from apercu.config import Settings

# One recv() per readable event, into one buffer per process: big enough for uploads, short enough to be fair to
# the other sockets, and never allocated per read (256 KiB allocations left ~30 KiB of fragmented heap per stalled
# connection behind them).
READ_SIZE = 256 * 1024
HEAD_LIMIT = 32 * 1024  # request line and headers together; gunicorn's own limits (line, field) apply within it
SPOOL_IN_MEMORY = 16 * 1024  # body bytes kept in memory; beyond, the body goes to a file
CHUNK_LINE_LIMIT = 8190  # a chunk-size line, as gunicorn allows
TRAILER_LIMIT = 32 * 1024
LINGER_SECONDS = 2.0  # before closing after an answer, drain what the client still sends for this long...
LINGER_BYTES = 64 * 1024  # ...and at most this much, so that the close does not reset the answer away
SWEEP_INTERVAL = 0.5  # how often deadlines are checked
FD_RESERVE = 128  # descriptors besides connections: listeners, logs, database, uploads being committed
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
STATUS_OF = {
    http_errors.LimitRequestLine: 414,
    http_errors.LimitRequestHeaders: 431,
    http_errors.ExpectationFailed: 417,
    http_errors.UnsupportedTransferCoding: 501,
    http_errors.ForbiddenProxyRequest: 403,
    http_errors.ConfigurationProblem: 500,
}

log = logging.getLogger(__name__)


class Refused(Exception):
    """A request the server answers itself, before any thread sees it; the connection then closes."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message[:300]
        self.code = code  # None: the status's usual code (errors.CODES)
        self.headers = headers


def error_response(
    status: int, message: str, code: str | None = None, headers: Sequence[tuple[str, str]] = ()
) -> bytes:
    """A whole HTTP/1.1 error response with the API's JSON body, closing the connection."""
    body = error_body(status, message, code)
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class Dechunker:
    """A chunked body (RFC 9112 section 7.1) decoded as it arrives, by a loop that must never wait for more."""

    def __init__(self) -> None:
        self.state = "size"  # size -> data -> crlf -> size ... -> trailer (after the last, empty, chunk)
        self.line = bytearray()  # the line being received in the size, crlf and trailer states
        self.remaining = 0  # data bytes left in the current chunk
        self.trailer_bytes = 0

    def feed(self, data: bytes, write: Callable[[memoryview], object]) -> bytes | None:
        """Decode `data`, writing chunk data out; None while the body goes on, else the bytes after its end."""
        view = memoryview(data)
        pos = 0
        while pos < len(data):
            if self.state == "data":
                size = min(self.remaining, len(data) - pos)
                write(view[pos : pos + size])
                pos += size
                self.remaining -= size
                if not self.remaining:
                    self.state = "crlf"
                continue
            end = data.find(b"\n", pos)
            stop = len(data) if end < 0 else end + 1
            self.line += view[pos:stop]
            pos = stop
            if len(self.line) > CHUNK_LINE_LIMIT:
                raise Refused(431 if self.state == "trailer" else 400, "a chunked-body line is too long")
            if end >= 0:
                if self._line_done(bytes(self.line)):
                    return data[pos:]
                self.line.clear()
        return None

    def _line_done(self, line: bytes) -> bool:
        """Act on one complete line; True when it ended the body."""
        if not line.endswith(b"\r\n"):
            raise Refused(400, "a chunked-body line ends with a bare LF")
        line = line[:-2]
        if self.state == "crlf":
            if line:
                raise Refused(400, "chunk data is longer than its size")
            self.state = "size"
            return False
        if self.state == "trailer":
            self.trailer_bytes += len(line) + 2
            if self.trailer_bytes > TRAILER_LIMIT:
                raise Refused(431, "the chunked-body trailer is too large")
            return not line
        self.remaining = chunk_size(line)
        self.state = "data" if self.remaining else "trailer"
        return False


def chunk_size(line: bytes) -> int:
    """The size of a chunk-size line, extensions checked and ignored, as gunicorn's own reader does."""
    digits, semicolon, extensions = line.partition(b";")
    if semicolon:
        digits = digits.rstrip(b" \t")
        if b"\r" in extensions or not CHUNK_EXT_RE.fullmatch(b";" + extensions):
            raise Refused(400, "invalid chunk extension")
    if not digits or any(c not in b"0123456789abcdefABCDEF" for c in digits):
        raise Refused(400, f"invalid chunk size {digits[:20]!r}")
    return int(digits, 16)


class Received(Unreader):
    """Bytes already received, given to gunicorn's parser once and then forgotten: the request object keeps its
    unreader, which must not keep the first read of the body alive with it."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data

    def chunk(self, size_hint: int | None = None) -> bytes:
        data, self.data = self.data, b""
        return data


class SpooledBody:
    """A body received as it is: in memory, then in an unnamed file on the data volume."""

    def __init__(self, folder: str) -> None:
        self.file = tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY, dir=folder)

    def write(self, piece: memoryview) -> None:
        self.file.write(piece)

    def stream(self) -> IO[bytes]:
        self.file.seek(0)
        return self.file

    def discard(self) -> None:
        self.file.close()


class SplitBody:
    """A multipart/form-data body split into its parts as it arrives (`api.multipart`): an upload's bytes are
    written once, straight to the staging file it is accepted from, instead of being spooled, read back,
    parsed and written again by the application. A malformed body is the application's to answer."""

    def __init__(self, boundary: str, new_file: Callable[[], IO[bytes]]) -> None:
        self.splitter = multipart.Splitter(boundary, new_file)

    def write(self, piece: memoryview) -> None:
        self.splitter.feed(piece)

    def stream(self) -> IO[bytes]:
        return ReceivedParts(self.splitter.finish())

    def discard(self) -> None:
        """Remove what the application did not commit (a committed file was renamed away)."""
        multipart.discard(self.splitter.split.parts)


class ReceivedParts(io.BytesIO):
    """The WSGI input of a split body: empty, with the split attached for `api.uploads.UploadRequest`."""

    def __init__(self, split: multipart.Split) -> None:
        super().__init__(b"")
        self.split = split


class Conn(TConn):
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
        self.body: SpooledBody | SplitBody | None = None
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


class BufferingWorker(ThreadWorker):
    """gthread whose event loop, not a thread, receives each request whole (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings: Settings = self.app.settings
        self.request_timeout = settings.request_timeout
        self.seconds_per_byte = 1 / settings.request_min_rate if settings.request_min_rate > 0 else 0.0
        self.max_body = settings.max_upload_bytes + MULTIPART_SLACK
        self.too_large = too_large_message(settings.max_upload_bytes)
        self.watched: set[Conn] = set()
        self.next_sweep = 0.0
        self.buffer = memoryview(bytearray(READ_SIZE))

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.new_upload_file = staging(self.wsgi)
        self.gate = access.gate(self.wsgi)

    # -- the event loop: connections between requests, receiving one, or lingering after an error ---------------

    def accept(self, listener: socket.socket) -> None:
        """A new connection waits for its first request in the event loop, holding no thread."""
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                return
            raise
        self.nr_conns += 1
        self._await_request(Conn(self.cfg, sock, client, listener.getsockname()), self.request_timeout)

    def _await_request(self, conn: Conn, idle_for: float) -> None:
        conn.release()
        conn.deadline = time.monotonic() + idle_for
        self._watch(conn)
        if conn.inbox:  # pipelined: the next request is (partly) here already
            self._take(conn, b"")

    def _on_readable(self, conn: Conn, _sock: socket.socket) -> None:
        try:
            size = conn.sock.recv_into(self.buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if conn.lingering:
            conn.drained += size
            if not size or conn.drained > LINGER_BYTES:
                self._close(conn)
        elif not size:
            self._on_eof(conn)
        else:
            self._take(conn, self.buffer[:size])

    def _on_eof(self, conn: Conn) -> None:
        """The client stopped sending: fine between requests, a 400 in the middle of a body."""
        if conn.request is None:
            self._close(conn)  # nothing, or part of a head: there is no request to answer
        else:
            self._refuse(conn, Refused(400, "the connection was closed before the whole request body was sent"))

    def _take(self, conn: Conn, data: bytes | memoryview) -> None:
        """New bytes of the current request (valid until the next read): move its deadline, then receive them."""
        if conn.started is None:
            conn.started = time.monotonic()
        conn.received += len(data)
        conn.deadline = conn.started + self.request_timeout + conn.received * self.seconds_per_byte
        try:
            self._advance(conn, data)
        except Refused as refused:
            self._refuse(conn, refused)
        except Exception:  # one request must not take down the loop, and every connection with it
            self.log.exception("Error receiving a request from %s", conn.client)
            self._refuse(conn, Refused(500, "internal server error"))

    def _advance(self, conn: Conn, data: bytes | memoryview) -> None:
        """Complete the head, then the body, then hand the request to a thread."""
        if conn.request is None:
            conn.inbox += data
            end = self._head_end(conn)
            if not end:
                return
            data = self._start_request(conn, end)
        rest = self._receive_body(conn, data)
        if rest is not None:
            conn.inbox = bytearray(rest)
            self._dispatch(conn)

    def _head_end(self, conn: Conn) -> int:
        """Where the head ends in the inbox, 0 if it has not yet (a bare-LF end counts: the parser refuses it)."""
        start = max(0, conn.scanned - 3)
        conn.scanned = len(conn.inbox)
        crlf = conn.inbox.find(b"\r\n\r\n", start)
        lf = conn.inbox.find(b"\n\n", start, crlf if crlf >= 0 else len(conn.inbox))
        if lf >= 0:
            return lf + 2
        if crlf >= 0:
            return crlf + 4
        if len(conn.inbox) > HEAD_LIMIT:
            if b"\n" in conn.inbox:
                raise Refused(431, f"the request headers are larger than {HEAD_LIMIT} bytes")
            raise Refused(414, f"the request line is longer than {HEAD_LIMIT} bytes")
        return 0

    def _start_request(self, conn: Conn, end: int) -> bytes:
        """Parse the head with gunicorn's parser (all its checks apply); returns the bytes that follow it."""
        unreader, rest = Received(bytes(conn.inbox[:end])), conn.inbox[end:]
        conn.inbox = bytearray()
        conn.scanned = 0
        conn.count += 1
        try:
            request = Request(self.cfg, unreader, conn.client, conn.count)
        except (http_errors.ParseException, http_errors.NoMoreData) as exc:
            raise Refused(STATUS_OF.get(type(exc), 400), str(exc)) from exc
        conn.request = request
        if isinstance(request.body.reader, ChunkedReader):
            conn.dechunker = Dechunker()
        else:
            conn.left = request.body.reader.length
        if conn.dechunker is not None or conn.left:
            self._admit(request)  # first, as in the application: a caller without a key learns nothing more
        if conn.left > self.max_body:
            raise Refused(413, self.too_large)  # from the header alone, before a byte of the body
        if request._expected_100_continue and (conn.dechunker or conn.left):
            try:
                conn.sock.send(CONTINUE)  # the first bytes sent on this request: the socket buffer has room
            except OSError:
                pass  # the client is gone: the next read says so
        request._expected_100_continue = False
        conn.body = self._body_for(request, has_body=conn.dechunker is not None or conn.left > 0)
        return unreader.take_buffered() + rest

    def _admit(self, request: Any) -> None:
        """The application's access rule (API key, backpressure: `api.access`), on the head of a request with a
        body: refused, it is answered before a byte of that body is received or a `100 Continue` sent, and what
        the client still sends is drained and dropped (`_linger`), never stored. A bodiless request has nothing
        to protect: the application's own before_request hook applies the same rule to it, and it keeps its
        connection, its CORS headers and everything else an answer from the application gets."""
        headers: dict[str, str] = {}
        for name, value in request.headers:
            headers.setdefault(name, value)  # gunicorn's names are upper-case; the first of a repeated one counts

        def header(name: str) -> str | None:
            return headers.get(name.upper())

        refusal = self.gate.check(request.method, unquote_to_wsgi_str(request.path), header)
        if refusal is not None:
            cors = self.gate.cors.response_headers(header("Origin"))
            raise Refused(refusal.status, refusal.message, refusal.code, [*refusal.headers, *cors])

    def _body_for(self, request: Any, has_body: bool) -> SpooledBody | SplitBody:
        """Where a request's body goes: a multipart form is split into its parts on arrival, anything else
        (a bodiless request that names a multipart type included) is spooled whole."""
        mimetype, options = parse_options_header(dict(request.headers).get("CONTENT-TYPE"))
        if mimetype == "multipart/form-data" and has_body:
            return SplitBody(options.get("boundary", ""), self.new_upload_file)
        return SpooledBody(self.cfg.tmp_upload_dir)

    def _receive_body(self, conn: Conn, data: bytes | memoryview) -> bytes | memoryview | None:
        """Store body bytes; None while the body goes on, else what follows it (the client's next request)."""
        if conn.dechunker is not None:
            return conn.dechunker.feed(bytes(data), partial(self._write_body, conn))
        size = min(conn.left, len(data))
        self._write_body(conn, memoryview(data)[:size])
        conn.left -= size
        return None if conn.left else data[size:]

    def _write_body(self, conn: Conn, piece: memoryview) -> None:
        conn.size += len(piece)
        if conn.size > self.max_body:
            raise Refused(413, self.too_large)  # a chunked body: stop reading at the limit
        assert conn.body is not None
        conn.body.write(piece)

    def _dispatch(self, conn: Conn) -> None:
        """The request is whole: a thread runs it with the body file as its input, of a known length."""
        request, body = conn.request, conn.body
        assert body is not None
        request.body = body.stream()
        if conn.dechunker is not None:
            request.headers = [h for h in request.headers if h[0] != "TRANSFER-ENCODING"]
            request.headers.append(("CONTENT-LENGTH", str(conn.size)))
        self._unwatch(conn)
        self.enqueue_req(conn)

    def _refuse(self, conn: Conn, refused: Refused) -> None:
        self.log.warning("Refused request from ip=%s: %d %s", conn.client[0], refused.status, refused.message)
        answer = observe.refused(  # its log line and metrics, as the application's answers get
            conn.request, refused.status, conn.size, conn.started,
            lambda request_id: error_response(
                refused.status, refused.message, refused.code, [*refused.headers, request_id]
            ),
        )
        conn.release()  # the body's files go before the answer: a client that has it sees no trace of its upload
        try:
            conn.sock.send(answer)
        except OSError:
            pass  # the client is gone or not reading: closing is all that is left
        self._linger(conn)

    def _linger(self, conn: Conn) -> None:
        """Close after an answer without resetting it away (RFC 9112 section 9.6): stop sending, then drain what
        the client still sends, for a bounded time and size, in the event loop rather than in a thread."""
        conn.release()
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.lingering = True
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self._watch(conn)

    def _watch(self, conn: Conn) -> None:
        if not conn.watched:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
            conn.watched = True
            self.watched.add(conn)

    def _unwatch(self, conn: Conn) -> None:
        if conn.watched:
            self.poller.unregister(conn.sock)
            conn.watched = False
            self.watched.discard(conn)

    def _close(self, conn: Conn) -> None:
        if conn.closed:
            return
        self._unwatch(conn)
        conn.release()
        conn.close()
        conn.closed = True
        self.nr_conns -= 1

    def murder_keepalived(self, force: bool = False) -> None:
        """gthread's periodic hook: a request past its deadline gets 408; idle and lingering connections close."""
        now = time.monotonic()
        if not force and now < self.next_sweep:
            return
        self.next_sweep = now + SWEEP_INTERVAL
        for conn in [c for c in self.watched if force or c.deadline <= now]:
            if force or conn.started is None or conn.lingering:
                self._close(conn)
            else:
                self._refuse(conn, Refused(408, "the request was not received in time"))

    def _cap_keepalive(self, deadline: float) -> None:
        """Stopping: connections between requests close by `deadline` (one arriving meanwhile is still served)."""
        for conn in self.watched:
            if conn.started is None:
                conn.deadline = min(conn.deadline, deadline)

    # -- a thread: run the application on a complete request ---------------------------------------------------

    def handle(self, conn: Conn) -> bool:
        """Answer one complete request; True keeps the connection for the next one."""
        try:
            conn.sock.settimeout(self.request_timeout)  # a client that stops reading the answer frees the thread
            return bool(self.handle_request(conn.request, conn))
        except StopIteration:
            pass  # the application failed after its response began: gunicorn already closed the connection
        except TimeoutError:
            self.log.debug("Client stopped reading the response from %s", conn.client)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
        except Exception as exc:  # noqa: BLE001 - whatever escaped the application is answered 500
            self.handle_error(conn.request, conn.sock, conn.client, exc)
        return False

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        """What escaped the application (Flask answers its own errors): logged, and answered 500 in JSON."""
        self.log.error("Error handling request %s", getattr(req, "uri", ""), exc_info=exc)
        try:
            client.sendall(error_response(500, "internal server error"))
        except OSError:
            pass

    def finish_request(self, conn: Conn, future: Future[bool]) -> None:
        """Back from a thread (in the event loop): the connection waits for its next request, or closes."""
        keep = not future.cancelled() and future.exception() is None and future.result()
        if keep:
            conn.sock.setblocking(False)
            self._await_request(conn, self.cfg.keepalive)
        else:
            self._linger(conn)


class GunicornLogger(glogging.Logger):
    """gunicorn's own messages (starting, workers booting and exiting, errors) through apercu's logging and its
    format (`apercu.logs`: JSON with APERCU_LOG_FORMAT=json) instead of gunicorn's handlers."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True


def _child_exit(_server: Any, worker: Any) -> None:
    """In the master, when a worker process ends: its live gauges leave the sums (see apercu.metrics)."""
    metrics.process_exited(worker.pid)


class WebServer(BaseApplication):
    """gunicorn configured from apercu's settings alone."""

    def __init__(self, settings: Settings, connections: int) -> None:
        self.settings = settings
        self.connections = connections
        super().__init__()

    def load_config(self) -> None:
        settings = self.settings
        config = {
            "bind": [f"{settings.host}:{settings.port}"],
            "workers": settings.web_workers,
            "worker_class": BufferingWorker,
            "threads": settings.web_threads,
            "worker_connections": self.connections,
            # Request bodies are spooled on the data volume, which has room for uploads (a tmpfs /tmp may not).
            "tmp_upload_dir": str(Path(settings.data_dir).resolve() / "tmp"),
            "graceful_timeout": 10,
            "timeout": 60,
            "loglevel": settings.log_level.lower(),
            "accesslog": None,  # api.observe logs every request, with its request id
            "logger_class": GunicornLogger,
            "child_exit": _child_exit,
            "control_socket_disable": True,
        }
        for name, value in config.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        return create_app(self.settings)


def serve(settings: Settings) -> None:
    """Run the web server in the foreground until SIGTERM or Ctrl-C."""
    if settings.request_timeout <= 0:
        raise ValueError(f"APERCU_REQUEST_TIMEOUT={settings.request_timeout} must be positive")
    create_app(settings)  # fail fast, in the foreground, on a bad database URL or data directory
    WebServer(settings, connection_budget(settings.web_connections)).run()


def connection_budget(wanted: int) -> int:
    """Connections per process the descriptor limit allows (each may hold a socket and a body file), raising the
    soft limit, often 1024, as far as the hard one permits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < needed:
        allowed = max(1, (soft - FD_RESERVE) // 2)
        log.warning("APERCU_WEB_CONNECTIONS=%d needs %d file descriptors; the limit is %d: using %d", wanted,
                    needed, soft, allowed)
        return allowed
    return wanted
