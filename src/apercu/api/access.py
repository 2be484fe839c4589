"""Who may call the API and whether an upload is taken at all: API keys, the public paths, backpressure, CORS.

One rule, `Gate.check`, decided from a request's head alone (method, path, headers), in two places:
- apercu's own server (`api.server`) asks it as soon as a head is parsed, before it receives a byte of the body
  (and before it sends `100 Continue`): an unauthenticated 50 MB upload, or one that arrives while the queue is
  full or the disk nearly is, is answered and closed without ever being written to disk;
- a Flask before_request hook asks it too, for every other way the app runs (the test client, another WSGI
  server), where it still runs before the body is read, since the form is parsed only when a route asks for it.
Both pass the path as WSGI's PATH_INFO (percent-decoded), so both see the same request the router will.

API keys (`ApiKeys`: APERCU_API_KEYS, APERCU_API_KEYS_FILE) are optional: without any, everything is open as
before. With keys, every path needs one except PUBLIC_PATHS (and thumbnails with APERCU_PUBLIC_THUMBNAILS),
sent as `X-API-Key` or `Authorization: Bearer`, and compared in constant time against every key.

A refusal is an `api.errors.ApiError`, answered by the hook as the routes' errors are, and by the server as its
own refusals are.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from pathlib import Path

from flask import Flask, Response, request
from flask.typing import ResponseReturnValue

from apercu.api.backpressure import MIB, Load, pending_count
from apercu.api.cors import Cors
from apercu.api.errors import ApiError
from apercu.config import API_KEY, SettingError, Settings

# What needs no key: exact paths, or prefixes ending in "*". The web page and its assets must load before the
# page can ask for a key; probes and metrics scrapers have none; the API's description is no secret.
PUBLIC_PATHS = (
    "/",  # the service status (JSON) and the web page (HTML)
    "/static/*",  # the web page's assets
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",  # Swagger UI
    "/docs/*",
    "/r/*",  # renditions: their signature stands in for the key (the route checks it: `rendition_urls.accepts`)
)
THUMBNAILS = "/thumbnails/*"  # public too with APERCU_PUBLIC_THUMBNAILS (for <img> tags that cannot send a key)
UPLOAD = ("POST", "/images")  # the one request backpressure applies to
BUSY_RETRY_AFTER = 5  # seconds: about how long a worker takes to make a dent in the queue
EXTENSION = "apercu.access"

Header = Callable[[str], str | None]  # a request header by name (case-insensitive), None when absent
UploadCheck = Callable[[Header, str], ApiError | None]  # another rule for an upload's head, given the client address


def is_public(path: str, patterns: Iterable[str]) -> bool:
    return any(path.startswith(p[:-1]) if p.endswith("*") else path == p for p in patterns)


class ApiKeys:
    """The accepted API keys (not blob keys, not idempotency keys), kept as SHA-256 digests: a candidate's digest
    is compared with every key's in constant time (hmac.compare_digest, which then also sees equal lengths), with
    no early exit on a match, so neither timing nor length tells a caller how close a guess came, or which key
    matched."""

    def __init__(self, api_keys: Iterable[str]) -> None:
        self._digests = tuple(hashlib.sha256(key.encode()).digest() for key in api_keys)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, candidate: str | None) -> bool:
        if candidate is None:
            return False
        digest = hashlib.sha256(candidate.encode("utf-8", "replace")).digest()
        found = False
        for key in self._digests:
            found |= hmac.compare_digest(digest, key)
        return found


def load_api_keys(settings: Settings) -> ApiKeys:
    """The API keys of APERCU_API_KEYS (parsed and checked with the settings) and APERCU_API_KEYS_FILE (one per
    line; blank lines and `#` comments ignored), read once, at start. SettingError for a file that cannot be read,
    that names no key (a typo must not silently open the API) or holds a key with characters a header cannot carry
    as they are (config.API_KEY, the rule of APERCU_API_KEYS too). Messages name the setting and the line, never a
    key."""
    found = list(settings.api_keys)
    if settings.api_keys_file:
        try:
            text = Path(settings.api_keys_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingError(f"APERCU_API_KEYS_FILE={settings.api_keys_file!r} cannot be read: {exc}") from None
        in_file = 0
        for number, line in enumerate(text.splitlines(), 1):
            key = line.strip()
            if key and not key.startswith("#"):
                API_KEY.check(key, f"APERCU_API_KEYS_FILE line {number}")
                found.append(key)
                in_file += 1
        if not in_file:
            raise SettingError(f"APERCU_API_KEYS_FILE={settings.api_keys_file!r} holds no key")
    return ApiKeys(dict.fromkeys(found))


def presented_api_key(header: Header) -> str | None:
    """The key a request carries: `X-API-Key: <key>`, else `Authorization: Bearer <key>`."""
    key = header("X-API-Key")
    if key is not None:
        return key.strip()
    scheme, _, token = (header("Authorization") or "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class Gate:
    """The rule (see the module docstring): `check` returns the refusal for a request head, or None."""

    def __init__(self, settings: Settings, api_keys: ApiKeys, cors: Cors, load: Load) -> None:
        self.api_keys, self.cors, self.load = api_keys, cors, load
        self.public = public_paths(settings)
        self.max_pending = settings.max_pending
        self.min_free_mb = settings.min_free_mb
        self.upload_checks: list[UploadCheck] = []  # added by api.rate_limit

    @classmethod
    def for_app(cls, app: Flask) -> Gate:
        """Built once per app, at start: the keys are read and the CORS list checked now (ValueError if bad)."""
        service = app.extensions["apercu"]
        settings: Settings = service.settings
        load = Load(pending_count(service.storage.catalog.images.counts), settings.data_dir)
        return cls(settings, load_api_keys(settings), Cors(settings.cors_origins), load)

    def check(self, method: str, path: str, header: Header, address: str = "") -> ApiError | None:
        """Key first (an anonymous caller learns nothing about the load), then, for an upload, backpressure."""
        if self.api_keys and not self._needs_no_key(method, path, header):
            key = presented_api_key(header)
            if not self.api_keys.accepts(key):
                return self._unauthorized(key is None)
        if (method, path) == UPLOAD:
            return next(filter(None, (c(header, address) for c in self.upload_checks)), None) or self._backpressure()
        return None

    def _needs_no_key(self, method: str, path: str, header: Header) -> bool:
        """Public paths, and CORS preflights from an allowed origin: browsers send those without the key,
        whatever the page does. (A preflight has no body; one from anywhere else is an ordinary OPTIONS.)"""
        return is_public(path, self.public) or self.is_preflight(method, header)

    def is_preflight(self, method: str, header: Header) -> bool:
        """A CORS preflight from an allowed origin, and bodiless as preflights are."""
        preflight = self.cors.is_preflight(method, header("Access-Control-Request-Method"))
        bodiless = header("Content-Length") in (None, "0") and header("Transfer-Encoding") is None
        return preflight and bodiless and self.cors.allowed(header("Origin"))

    @staticmethod
    def _unauthorized(missing: bool) -> ApiError:
        message = (
            "an API key is required: send it as X-API-Key: <key> or Authorization: Bearer <key>"
            if missing
            else "the API key is not valid"
        )
        return ApiError(401, message, "unauthorized", [("WWW-Authenticate", "Bearer")])

    def _backpressure(self) -> ApiError | None:
        if self.max_pending:
            pending = self.load.pending.get()
            if pending is not None and pending > self.max_pending:
                message = f"{pending} images are waiting to be processed (the limit is {self.max_pending}): try later"
                return ApiError(503, message, "busy", [("Retry-After", str(BUSY_RETRY_AFTER))])
        if self.min_free_mb:
            free = self.load.free_bytes.get()
            if free is not None and free < self.min_free_mb * MIB:
                message = f"less than {self.min_free_mb} MiB is free on the data disk: uploads are refused for now"
                return ApiError(507, message, "insufficient_storage")
        return None


def public_paths(settings: Settings) -> tuple[str, ...]:
    """What needs no key under these settings: PUBLIC_PATHS, and thumbnails with APERCU_PUBLIC_THUMBNAILS."""
    return PUBLIC_PATHS + ((THUMBNAILS,) if settings.public_thumbnails else ())


def gate(app: Flask) -> Gate:
    """The app's gate, for the server to ask before it receives a body."""
    found: Gate = app.extensions[EXTENSION]
    return found


def register(app: Flask) -> None:
    """Build the gate (reading the keys: a bad setting fails here, at start) and apply it to every request."""
    the_gate = app.extensions[EXTENSION] = Gate.for_app(app)
    cors = the_gate.cors

    @app.before_request
    def _admit() -> ResponseReturnValue | None:
        header = request.headers.get
        if the_gate.is_preflight(request.method, header):
            answer = Response(status=204, headers=cors.preflight_headers(header("Origin")))
            answer.headers.remove("Content-Type")  # no body, so no type
            return answer
        path, address = request.environ.get("PATH_INFO", ""), request.remote_addr or ""
        refusal = the_gate.check(request.method, path, header, address)
        if refusal is None:
            return None
        return refusal.response()

    @app.after_request
    def _cors(response: Response) -> Response:
        if cors.enabled:
            response.vary.add("Origin")
            for name, value in cors.response_headers(request.headers.get("Origin")):
                response.headers[name] = value
        return response
