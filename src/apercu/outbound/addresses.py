"""Which URLs the service may call: the address policy against server-side request forgery, one for every
outbound request (a webhook's delivery, an upload by URL's fetch).

The URL comes from an uploader (`callback_url`, an upload's `url`) or the operator (`APERCU_WEBHOOK_URL`), so
neither the web nor the worker may become a way into the network they run in:
- only http and https;
- the host is resolved once, every address it resolves to must be public (not private, loopback, link-local,
  the cloud metadata address, multicast, reserved or unspecified, IPv4-mapped forms included) unless the host
  is in the caller's allowed hosts (`APERCU_WEBHOOK_ALLOWED_HOSTS`, `APERCU_FETCH_ALLOWED_HOSTS`), and the
  connection goes to the address that was checked (`Target`, `outbound.connections`), so a second DNS answer
  cannot swap in another (DNS rebinding).

The web checks an upload's URLs as far as their text tells (`check`); every delivery or fetch resolves and checks
them again (`resolve`), since what a name resolves to may have changed since.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL = 2048


class Refused(Exception):
    """The URL may not be called (scheme, host, or an address it resolves to); retrying will not help."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL: the Host header and the name the certificate must carry
    port: int
    path: str
    address: str  # the checked address the connection goes to


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
    return host.lower() in allowed_hosts  # (the allowed-hosts settings are lower case: see config)


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
