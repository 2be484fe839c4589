"""Behind a reverse proxy: the client's address, scheme, host and path prefix, from `X-Forwarded-For`, `-Proto`,
`-Host` and `-Prefix`, but only when the connection comes from a proxy the deployment trusts
(`APERCU_TRUSTED_PROXIES`, addresses or networks). From anyone else those headers are ignored: any client can send
them, and honoured blindly they would let it pick the address its rate limit counts, or the links it is given.

Why not werkzeug's ProxyFix: it trusts a number of hops, whoever sent them; a service reachable both through its
proxy and directly (a health checker, a sidecar, another pod) must tell the proxy apart by its address.

`Forwarded` is WSGI middleware, outermost in the app (`install`), so every layer below sees the request as the
client sent it to the proxy: `REMOTE_ADDR` is the client (access gate, rate limits, logs), `wsgi.url_scheme` and
`HTTP_HOST` name the public scheme and host (`request.url_root`), and `SCRIPT_NAME` is the prefix the proxy strips
(`request.script_root`: `url_for`, the page's assets and scripts, every link an answer carries). The connection's
own address stays in the environ under `PEER`. apercu's own server leaves a trusted proxy's requests to the app's
access gate (`api.server.connection.admit`, which says why), so the client is found by this one rule, here.

The client is the right-most address of `X-Forwarded-For` that is not a trusted proxy's: each proxy appends the
address it was connected from, so everything left of the first untrusted one is whatever that client wrote. The
other headers are taken from their last value (the nearest proxy's), and only when well formed: an unusable value
leaves that part of the request as it arrived.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING

from flask import Flask

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PEER = "apercu.peer"  # the environ's key for the connection's own address
SCHEMES = frozenset({"http", "https"})
HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")
# A path of non-empty segments (never `//host`, which a browser would read as another origin), without a trailing
# slash, of characters that need no escaping in a URL, HTML or JSON.
PREFIX = re.compile(r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+")


@cache
def networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """APERCU_TRUSTED_PROXIES as networks (each entry was checked when the settings were built)."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def parsed(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as `X-Forwarded-For` or a socket gives it (IPv6 perhaps in brackets; IPv4-mapped IPv6 as the
    IPv4 address it is), or None for anything else."""
    try:
        address = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def trusts(trusted: tuple[Network, ...], address: str) -> bool:
    found = parsed(address)
    return found is not None and any(found in network for network in trusted)


def client_address(entries: tuple[str, ...], peer: str, forwarded_for: str | None) -> str:
    """The client of a connection from `peer`: `peer` itself unless it is a trusted proxy; else the right-most
    untrusted address of `X-Forwarded-For`. An entry that is no address cannot be told apart from a made-up one:
    the request is then the last trusted hop's (so garbage cannot buy a client a fresh rate limit)."""
    trusted = networks(entries)
    if not forwarded_for or not trusts(trusted, peer):
        return peer
    hop = peer
    for entry in reversed(forwarded_for.split(",")):
        address = parsed(entry)
        if address is None:
            return hop
        if not any(address in network for network in trusted):
            return str(address)
        hop = str(address)
    return hop


def from_trusted_proxy(entries: tuple[str, ...], peer: str) -> bool:
    """Whether a connection from `peer` is a trusted proxy's (APERCU_TRUSTED_PROXIES)."""
    return bool(entries) and trusts(networks(entries), peer)


def last(values: str | None) -> str | None:
    """The last of a header's comma-separated values (the nearest proxy's), stripped."""
    return None if values is None else values.rsplit(",", 1)[-1].strip()


class Forwarded:
    """The middleware (see the module docstring)."""

    def __init__(self, app: WSGIApplication, trusted: Iterable[str]) -> None:
        self.app, self.trusted = app, tuple(trusted)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        peer = environ.get("REMOTE_ADDR", "")
        environ[PEER] = peer
        if from_trusted_proxy(self.trusted, peer):
            self.apply(environ, peer)
        return self.app(environ, start_response)

    def apply(self, environ: WSGIEnvironment, peer: str) -> None:
        """What a trusted proxy's headers say, each where it is well formed."""
        environ["REMOTE_ADDR"] = client_address(self.trusted, peer, environ.get("HTTP_X_FORWARDED_FOR"))
        scheme = (last(environ.get("HTTP_X_FORWARDED_PROTO")) or "").lower()
        if scheme in SCHEMES:
            environ["wsgi.url_scheme"] = scheme
        host = last(environ.get("HTTP_X_FORWARDED_HOST"))
        if host and HOST.fullmatch(host):
            environ["HTTP_HOST"] = host
        prefix = (last(environ.get("HTTP_X_FORWARDED_PREFIX")) or "").rstrip("/")
        if PREFIX.fullmatch(prefix):
            environ["SCRIPT_NAME"] = prefix


def install(app: Flask) -> None:
    """Outermost, after every other middleware (`api.observe` included: its log line names the client)."""
    trusted = app.extensions["apercu"].settings.trusted_proxies
    app.wsgi_app = Forwarded(app.wsgi_app, trusted)  # type: ignore[method-assign]
