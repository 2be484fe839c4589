"""`BufferingWorker`: gunicorn's threaded worker, with each request received whole by its event loop before a
thread runs it (see the package docstring for why).

It keeps gthread's processes, thread pool, HTTP parser and WSGI handling, and overrides the parts that give a
connection to a thread: `accept` (a new connection waits in the event loop), `finish_request` (after an answer,
it goes back there), `murder_keepalived` (the periodic sweep: deadlines, 408) and `_cap_keepalive` (stopping),
plus `handle` and `handle_error` (what a thread does, and the JSON 500). These are gunicorn internals, hence the
exact pin in pyproject.toml: on an upgrade, read gunicorn/workers/gthread.py again before anything else.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from concurrent.futures import Future
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from apercu.api import access, observe
from apercu.api.errors import INTERNAL_ERROR, ApiError
from apercu.api.server.connection import Conn, Intake
from apercu.api.server.head import asked_of
from apercu.api.uploads import MULTIPART_SLACK, staging, too_large_message
from apercu.config import Settings

# One recv() per readable event, into one buffer per process: big enough for uploads, short enough to be fair to
# the other sockets, and never allocated per read (256 KiB allocations left ~30 KiB of fragmented heap per stalled
# connection behind them).
READ_SIZE = 256 * 1024
LINGER_SECONDS = 2.0  # before closing after an answer, drain what the client still sends for this long...
LINGER_BYTES = 64 * 1024  # ...and at most this much, so that the close does not reset the answer away
SWEEP_INTERVAL = 0.5  # how often deadlines are checked
NOTIFY_INTERVAL = 1.0  # how often the arbiter is told this process lives (its timeout: 60 s)


class BufferingWorker(ThreadWorker):  # type: ignore[misc, unused-ignore]  # gunicorn has no type stubs
    """gthread whose event loop, not a thread, receives each request whole."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watched: set[Conn] = set()
        self.next_sweep = 0.0
        self.next_notify = 0.0
        self.buffer = memoryview(bytearray(READ_SIZE))

    def notify(self) -> None:
        """Tell the arbiter this process lives at most once a second: gthread does on every turn of its event
        loop, a utime() that was ~5% of a kept rendition's request (py-spy)."""
        now = time.monotonic()
        if now >= self.next_notify:
            self.next_notify = now + NOTIFY_INTERVAL
            super().notify()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        settings: Settings = self.app.settings
        self.intake = Intake(
            cfg=self.cfg,
            request_timeout=settings.request_timeout,
            seconds_per_byte=1 / settings.request_min_rate if settings.request_min_rate > 0 else 0.0,
            max_body=settings.max_upload_bytes + MULTIPART_SLACK,
            too_large=too_large_message(settings.max_upload_bytes),
            gate=access.gate(self.wsgi),
            new_upload_file=staging(self.wsgi),
        )

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
        self._await_request(Conn(self.cfg, sock, client, listener.getsockname()), self.intake.request_timeout)

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
            self._refuse(conn, ApiError(400, "the connection was closed before the whole request body was sent"))

    def _take(self, conn: Conn, data: bytes | memoryview) -> None:
        """Receive new bytes of the current request; a whole one goes to a thread, a refused one is answered."""
        try:
            whole = conn.receive(data, self.intake)
        except ApiError as refusal:
            self._refuse(conn, refusal)
            return
        except Exception:  # one request must not take down the loop, and every connection with it
            self.log.exception("Error receiving a request from %s", conn.client)
            self._refuse(conn, INTERNAL_ERROR)
            return
        if whole:
            conn.complete()
            self._unwatch(conn)
            self.enqueue_req(conn)

    def _refuse(self, conn: Conn, refusal: ApiError) -> None:
        self.log.warning("Refused request from ip=%s: %d %s", conn.client[0], refusal.status, refusal.message)
        answer = observe.refused(  # its log line and metrics, as the application's answers get
            conn.request, refusal.status, conn.size, conn.started,
            lambda request_id: refusal.with_headers(request_id).http_message(asked_of(conn.request)),
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
                self._refuse(conn, ApiError(408, "the request was not received in time"))

    def _cap_keepalive(self, deadline: float) -> None:
        """Stopping: connections between requests close by `deadline` (one arriving meanwhile is still served)."""
        for conn in self.watched:
            if conn.started is None:
                conn.deadline = min(conn.deadline, deadline)

    # -- a thread: run the application on a complete request ---------------------------------------------------

    def handle(self, conn: Conn) -> bool:
        """Answer one complete request; True keeps the connection for the next one."""
        try:
            conn.sock.settimeout(self.intake.request_timeout)  # a client that stops reading frees the thread
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
            client.sendall(INTERNAL_ERROR.http_message(asked_of(req)))
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
