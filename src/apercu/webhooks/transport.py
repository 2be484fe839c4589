"""Sending one webhook: a signed POST of a body to a target the address policy checked (`webhooks.addresses`).

The connection goes to the address that was checked, never to a second DNS answer (DNS rebinding); https still
verifies the certificate for the host name. No redirects are followed (http.client does not), timeouts are
short, the whole exchange has a deadline, and at most 64 KiB of the answer is read.

Signed the Standard Webhooks way (https://www.standardwebhooks.com, signature `v1`): `webhook-id` is the delivery's
id (the same on every retry: a receiver drops repeats by it), `webhook-timestamp` this attempt's Unix seconds, and
`webhook-signature: v1,<base64>` the HMAC-SHA256 of `<id>.<timestamp>.<body>` under the key APERCU_WEBHOOK_SECRET
stands for (`config.webhook_key`). The id and the time being signed with the body, a captured delivery cannot be
sent again later, nor under another id, without failing a receiver's check.

The headers of the scheme before it (`X-Apercu-Delivery`, `X-Apercu-Timestamp`, and `X-Apercu-Signature`, which
covers the body only and so lets a captured delivery be replayed with a fresh timestamp) are still sent, deprecated,
so that receivers written for them keep working while they move to the standard ones: see `legacy_headers`.
"""

from __future__ import annotations

import base64
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


def signature(key: bytes, delivery_id: str, timestamp: int, body: bytes) -> str:
    """`webhook-signature`: Standard Webhooks' `v1`, the base64 HMAC-SHA256 of `<id>.<timestamp>.<body>`. (The id
    is ours, 32 hex digits, and the timestamp a number: neither can hold the `.` that separates them.)"""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def legacy_headers(key: bytes, delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of the scheme before Standard Webhooks, deprecated (the README says until when): the signature
    covers the body alone, so it does not stop a replay; they go when receivers have had a release to move."""
    return {
        "X-Apercu-Delivery": delivery_id,
        "X-Apercu-Timestamp": str(timestamp),
        "X-Apercu-Signature": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
    }


def post(target: Target, body: bytes, key: bytes, delivery_id: str) -> Answer:
    """POST the body once, signed with `key`; OSError (no connection, a timeout) is left to the caller, which
    retries."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, delivery_id, timestamp, body),
        **legacy_headers(key, delivery_id, timestamp, body),
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
