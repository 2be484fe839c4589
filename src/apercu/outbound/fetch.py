"""Fetching the bytes of an upload by URL, under the same policy as a webhook's delivery (`outbound.addresses`):
every URL, redirects' included, resolved and checked before it is connected to (at the checked address), at most
`MAX_REDIRECTS` redirects, a timeout per connect and read and a deadline for the whole fetch, and the size limit
counted while the body streams in (reading stops at the first byte beyond it, whatever Content-Length said).

What went wrong is a `FetchFailed` whose message is the image's error, and whose `outcome` labels the metric.
"""

from __future__ import annotations

import http.client
import time
from typing import IO
from urllib.parse import urljoin

from apercu.outbound.addresses import Refused, resolve
from apercu.outbound.connections import connect, deadline

MAX_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)
CHUNK = 64 * 1024
USER_AGENT = "apercu-fetch/1"


class FetchFailed(Exception):
    """The URL's bytes could not be had; the message says why (shown as the image's error)."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome  # one of metrics.FETCH_OUTCOMES


def fetch(url: str, sink: IO[bytes], *, allowed_hosts: frozenset[str], max_bytes: int, timeout: float,
          total: float) -> None:
    """Write the body that `url` (after up to MAX_REDIRECTS redirects) answers with into `sink`."""
    ends = time.monotonic() + total
    for _ in range(MAX_REDIRECTS + 1):
        location = _get(url, sink, allowed_hosts, max_bytes, timeout, ends)
        if location is None:
            return
        url = urljoin(url, location)
    raise FetchFailed("redirects", f"more than {MAX_REDIRECTS} redirects")


def _get(url: str, sink: IO[bytes], allowed_hosts: frozenset[str], max_bytes: int, timeout: float,
         ends: float) -> str | None:
    """One GET: the Location it redirects to, or None once its body is in `sink`."""
    try:
        target = resolve(url, allowed_hosts)
    except Refused as exc:
        raise FetchFailed("refused", f"refused: {exc}") from None
    left = ends - time.monotonic()
    try:
        if left <= 0:
            raise TimeoutError
        conn = connect(target, min(timeout, left))
        with deadline(conn, left):
            conn.request("GET", target.path, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
            with conn.getresponse() as response:  # (closed too: else its file keeps the socket open)
                if response.status in REDIRECTS and response.getheader("Location"):
                    return response.getheader("Location")
                if response.status != 200:
                    raise FetchFailed("http_status", f"the server answered HTTP {response.status}")
                _stream(response, sink, max_bytes)
    except TimeoutError:
        raise FetchFailed("timeout", "the server did not answer in time") from None
    except (OSError, http.client.HTTPException) as exc:
        _check(ends)
        raise FetchFailed("error", f"{type(exc).__name__}: {exc}"[:300]) from None
    _check(ends)  # a body without Content-Length cut at the deadline ends like a whole one: it is not
    return None


def _check(ends: float) -> None:
    if time.monotonic() >= ends:
        raise FetchFailed("timeout", "the fetch took longer than its deadline")


def _stream(response: http.client.HTTPResponse, sink: IO[bytes], max_bytes: int) -> None:
    too_large = FetchFailed("too_large", f"the file is larger than the maximum upload size of {max_bytes} bytes")
    declared = response.getheader("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    size = 0
    while chunk := response.read(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        sink.write(chunk)
    if size == 0:
        raise FetchFailed("not_an_image", "the server answered with no bytes")
