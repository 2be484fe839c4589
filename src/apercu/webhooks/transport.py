"""Sending one webhook: a signed POST of a body to a target the address policy checked (`outbound.addresses`).

The connection goes to the address that was checked, never to a second DNS answer (DNS rebinding); https still
verifies the certificate for the host name (`outbound.connections`). No redirects are followed (http.client does
not), timeouts are short, the whole exchange has a deadline, and at most 64 KiB of the answer is read.

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
import time
from dataclasses import dataclass

from apercu.outbound import Target, connect, deadline

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
    """The headers of the scheme before Standard Webhooks, deprecated (docs/API.md, "Completion webhooks", says
    until when): the signature covers the body alone, so it does not stop a replay; they go when receivers have had
    a release to move."""
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
    conn = connect(target, CONNECT_TIMEOUT)
    with deadline(conn, TOTAL_TIMEOUT):
        conn.request("POST", target.path, body=body, headers=headers)
        conn.sock.settimeout(READ_TIMEOUT)
        response = conn.getresponse()
        excerpt = response.read(MAX_ANSWER)[:200].decode("utf-8", "replace")
        return Answer(response.status, excerpt)
