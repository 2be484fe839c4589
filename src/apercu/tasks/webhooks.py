"""Delivering one webhook: a signed POST of an image's JSON to a URL someone else chose, safely.

The URL comes from an uploader (`callback_url`) or the operator (`APERCU_WEBHOOK_URL`), so the worker must not
become a way into the network it runs in (server-side request forgery):
- only http and https;
- the host is resolved once, every address it resolves to must be public (not private, loopback, link-local,
  the cloud metadata address, multicast, reserved or unspecified, IPv4-mapped forms included) unless the host
  is in `APERCU_WEBHOOK_ALLOWED_HOSTS`, and the connection goes to the address that was checked, so a second
  DNS answer cannot swap in another (DNS rebinding); https still verifies the certificate for the host name;
- no redirects are followed (http.client does not), timeouts are short, and at most 64 KiB of the answer is
  read.

The body is signed: `X-Apercu-Signature: sha256=<hex>` is the HMAC-SHA256 of the exact body bytes under
`APERCU_WEBHOOK_SECRET`; `X-Apercu-Delivery` (an id, the same on every retry of one delivery) and
`X-Apercu-Timestamp` (Unix seconds of this attempt) let a receiver drop repeats and stale replays.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
MAX_ANSWER = 64 * 1024
MAX_URL = 2048
TOTAL_TIMEOUT = 20.0  # one attempt, connecting to the last byte read
USER_AGENT = "apercu-webhook/1"


class Refused(Exception):
    """The URL may not be called (scheme, host, or an address it resolves to); retrying will not help."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL: the Host header and the name the certificate must carry
    port: int
    path: str
    address: str  # the checked address the connection goes to


@dataclass(frozen=True)
class Answer:
    status: int
    excerpt: str  # the start of the receiver's answer, for the delivery's record

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def check(url: str, allowed_hosts: Collection[str] = ()) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a URL that may be called as far as its text tells (no DNS lookup: what an
    upload's `callback_url` is checked with); Refused says why not."""
    if len(url) > MAX_URL:
        raise Refused(f"the URL is longer than {MAX_URL} characters")
    if not url.isascii() or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise Refused("the URL has spaces, control or non-ASCII characters (percent-encode them)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Refused(f"only http and https URLs are called, not {parts.scheme or 'a relative URL'}")
    if not parts.hostname or parts.username or parts.password:
        raise Refused("the URL needs a host and no user name or password")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("the URL's port is not a number from 0 to 65535") from None
    host = parts.hostname
    try:
        host.encode("idna")
    except UnicodeError:
        raise Refused(f"{host} is not a valid host name") from None
    if not _allowed(host, allowed_hosts):
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            raise Refused(f"{host} is this machine")
        if _is_address(host) and not is_public(host):
            raise Refused(f"{host} is not a public address")
    return parts.scheme, host, port, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def resolve(url: str, allowed_hosts: Collection[str] = ()) -> Target:
    """The URL's target, checked, with every address its host resolves to; Refused says why not."""
    scheme, host, port, path = check(url, allowed_hosts)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Refused(f"{host} does not resolve ({exc.strerror})") from None
    addresses = [str(info[4][0]) for info in found]
    if not _allowed(host, allowed_hosts):
        for address in addresses:
            if not is_public(address):
                raise Refused(f"{host} resolves to {address}, which is not a public address")
    return Target(scheme, host, port, path, addresses[0])


def _allowed(host: str, allowed_hosts: Collection[str]) -> bool:
    return host.lower() in {h.lower() for h in allowed_hosts}


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
        or ip.is_unspecified or not ip.is_global
    )


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(target: Target, body: bytes, secret: str, delivery_id: str) -> Answer:
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
