"""Connections to a checked `Target`: to its checked address, never to a second DNS answer (DNS rebinding), with
https still verifying the certificate for the URL's host name; each with a timeout per connect and read, and a
whole exchange under a deadline (a server trickling a byte at a time never trips the per-read timeout)."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from apercu.outbound.addresses import Target


def connect(target: Target, timeout: float) -> http.client.HTTPConnection:
    """A connection to the checked address, naming the URL's host (Host header, TLS server name), connected."""
    if target.scheme == "https":
        pinned = _PinnedHTTPS(target, timeout)
        pinned.connect()
        return pinned
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    conn.sock = socket.create_connection((target.address, target.port), timeout=timeout)
    return conn


@contextmanager
def deadline(conn: http.client.HTTPConnection, seconds: float) -> Iterator[None]:
    """Past `seconds`, the connection's socket is shut down, so that a read blocked on it returns (an OSError, or
    the end of the body); the connection is closed on the way out. The socket is taken now: http.client hands it
    to a response that reads to the connection's close, and forgets it (`conn.sock` is None then)."""
    timer = threading.Timer(seconds, _cut, (conn.sock,))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        conn.close()


def _cut(sock: socket.socket | None) -> None:
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self._address = target.address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), timeout=self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]
