"""Sending one webhook: a signed POST of a body to a target the address policy checked (`webhooks.addresses`).

The connection goes to the address that was checked, never to a second DNS answer (DNS rebinding); https still
verifies the certificate for the host name. No redirects are followed (http.client does not), timeouts are
short, the whole exchange has a deadline, and at most 64 KiB of the answer is read.

The body is signed: `X-Apercu-Signature: sha256=<hex>` is the HMAC-SHA256 of the exact body bytes under
`APERCU_WEBHOOK_SECRET`; `X-Apercu-Delivery` (an id, the same on every retry of one delivery) and
`X-Apercu-Timestamp` (Unix seconds of this attempt) let a receiver drop repeats and stale replays.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from apercu.webhooks.addresses import Target

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
MAX_ANSWER = 64 * 1024
TOTAL_TIMEOUT = 20.0  # one attempt, connecting to the last byte read
USER_AGENT = "apercu-webhook/1"


@dataclass(frozen=True)
class Answer:
    status: int
    excerpt: str  # the start of the receiver's answer, for the delivery's record

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(target: Target, body: bytes, secret: str, delivery_id: str) -> Answer:
    """POST the body once; OSError (no connection, a timeout) is left to the caller, which retries."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Apercu-Delivery": delivery_id,
        "X-Apercu-Timestamp": str(int(time.time())),
        "X-Apercu-Signature": signature(secret, body),
    }
    conn = _connection(target)
    # A receiver trickling a byte at a time never trips the per-read timeout: the whole exchange has a deadline.
    deadline = threading.Timer(TOTAL_TIMEOUT, _cut, (conn,))
    deadline.start()
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        conn.sock.settimeout(READ_TIMEOUT)
        response = conn.getresponse()
        excerpt = response.read(MAX_ANSWER)[:200].decode("utf-8", "replace")
        return Answer(response.status, excerpt)
    finally:
        deadline.cancel()
        conn.close()


def _cut(conn: http.client.HTTPConnection) -> None:
    """Past the deadline: shut the socket down, so the blocked read in the worker's thread returns (an OSError)."""
    try:
        if conn.sock is not None:
            conn.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def _connection(target: Target) -> http.client.HTTPConnection:
    """A connection to the checked address, naming the URL's host (Host header, TLS server name)."""
    if target.scheme == "https":
        return _PinnedHTTPS(target)
    conn = http.client.HTTPConnection(target.host, target.port, timeout=CONNECT_TIMEOUT)
    conn.sock = socket.create_connection((target.address, target.port), timeout=CONNECT_TIMEOUT)
    return conn


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, target: Target) -> None:
        super().__init__(target.host, target.port, timeout=CONNECT_TIMEOUT, context=ssl.create_default_context())
        self._address = target.address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), timeout=CONNECT_TIMEOUT)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]
