"""CORS for an allow-list of origins (APERCU_CORS_ORIGINS), so that pages served elsewhere may call the API.

Off by default: without a list no response carries a CORS header, and browsers keep other sites' pages out.
An allowed origin gets its own name back (never `*`: the list is the point) and the response headers a client
needs to read (Location, Retry-After, ...). A preflight (OPTIONS with Access-Control-Request-Method) is answered
204 without an API key, as browsers send it without one. A disallowed origin gets no CORS header at all, which
is how a browser is told no. Every response says `Vary: Origin` while the list is on, so that a cache never
hands one origin's answer to another.
"""

from __future__ import annotations

METHODS = ("GET", "POST", "DELETE", "PATCH", "HEAD")  # PATCH, HEAD: resumable uploads (tus, `api.tus`)
TUS_REQUEST_HEADERS = ("Tus-Resumable", "Upload-Length", "Upload-Offset", "Upload-Metadata", "Upload-Checksum")
TUS_RESPONSE_HEADERS = ("Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm",
                        "Upload-Offset", "Upload-Length", "Upload-Metadata", "Upload-Expires", "Apercu-Image-Id",
                        "Link")
REQUEST_HEADERS = ("Content-Type", "X-API-Key", "Authorization", "Idempotency-Key", "X-Request-ID",
                   *TUS_REQUEST_HEADERS)
EXPOSED_HEADERS = ("Location", "Retry-After", "ETag", "X-Request-ID", "Idempotent-Replayed", "RateLimit-Limit",
                   "RateLimit-Remaining", "RateLimit-Reset", *TUS_RESPONSE_HEADERS)
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight's answer

Headers = list[tuple[str, str]]


class Cors:
    """The allow-list, and the headers each kind of response gets from it."""

    def __init__(self, origins: frozenset[str]) -> None:
        self.origins = origins

    @property
    def enabled(self) -> bool:
        return bool(self.origins)

    def allowed(self, origin: str | None) -> bool:
        return origin is not None and origin.lower() in self.origins

    @staticmethod
    def is_preflight(method: str, request_method: str | None) -> bool:
        """OPTIONS with Access-Control-Request-Method: a browser asking before the real request (never with a key)."""
        return method == "OPTIONS" and bool(request_method)

    def response_headers(self, origin: str | None) -> Headers:
        """For an actual response (errors included): none unless the origin is on the list."""
        if not self.allowed(origin):
            return []
        assert origin is not None
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Expose-Headers", ", ".join(EXPOSED_HEADERS)),
        ]

    def preflight_headers(self, origin: str | None) -> Headers | None:
        """The headers of a 204 answer to a preflight from an allowed origin; None for any other origin (the
        request then goes on as an ordinary OPTIONS, and its answer carries no CORS header)."""
        if not self.allowed(origin):
            return None
        return [
            *self.response_headers(origin),
            ("Access-Control-Allow-Methods", ", ".join(METHODS)),
            ("Access-Control-Allow-Headers", ", ".join(REQUEST_HEADERS)),
            ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE)),
        ]
