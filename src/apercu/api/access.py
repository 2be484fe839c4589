"""Who may call the API and whether an upload is taken at all: API keys and their scopes, the public paths,
the operator's endpoints, backpressure, CORS.

One rule, `Gate.decide`, decided from a request's head alone (method, path, headers), in two places:
- apercu's own server (`api.server`) asks it as soon as a head is parsed, before it receives a byte of the body
  (and before it sends `100 Continue`): an unauthenticated 50 MB upload, one whose key may not upload, or one that
  arrives while the queue is full or the disk nearly is, is answered and closed without ever being written to disk;
- a Flask before_request hook asks it too, for every other way the app runs (the test client, another WSGI
  server), where it still runs before the body is read, since the form is parsed only when a route asks for it;
  the hook also `remember`s who is calling (`api.caller`), for the routes.
Both pass the path as WSGI's PATH_INFO (percent-decoded), so both see the same request the router will.

API keys are optional: without any, everything is open as before (the caller is `caller.ANONYMOUS`). Whether keys
are required is one rule, `rendition_urls.keys_required`: APERCU_API_KEYS or APERCU_API_KEYS_FILE set, or any key
ever made in the catalog (`apercu keys create`). Then every path needs a key except the public ones (PUBLIC_PATHS;
thumbnails with APERCU_PUBLIC_THUMBNAILS; not /metrics with APERCU_METRICS_PUBLIC=false), sent as `X-API-Key` or
`Authorization: Bearer`, and the key must hold the scope its operation declares (`Operation.scope`), else 403
`insufficient_scope`. A key carries an identity (`ApiKeys`, `parse_key_line`); the catalog's keys are read again
within seconds of a change (`storage.catalog.keys`), so a revoked key stops working on every web process.

A refusal is an `api.errors.ApiError`, answered by the hook as the routes' errors are, and by the server as its
own refusals are.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from flask import Flask, Response, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule

from apercu.api import caller
from apercu.api.backpressure import MIB, Load, pending_count
from apercu.api.caller import ANONYMOUS, DEFAULT_TENANT, NOBODY, BadIdentity, Caller, Scope
from apercu.api.contract import OPERATIONS
from apercu.api.cors import Cors
from apercu.api.errors import ApiError
from apercu.config import API_KEY, SettingError, Settings
from apercu.rendition_urls import keys_required
from apercu.storage.catalog.keys import KeyRecord, Keys, KeySnapshot

METRICS = "/metrics"
# What needs no key: exact paths, or prefixes ending in "*". The web page and its assets must load before the
# page can ask for a key; probes and metrics scrapers have none; the API's description is no secret.
PUBLIC_PATHS = (
    "/",  # the service status (JSON) and the web page (HTML)
    "/static/*",  # the web page's assets
    "/healthz",
    "/readyz",  # without internal details, unless the caller is admin (`routes.readyz`)
    "/readyz/workers",
    METRICS,  # unless APERCU_METRICS_PUBLIC=false
    "/openapi.json",
    "/docs",  # Swagger UI
    "/docs/*",
    "/r/*",  # renditions: their signature stands in for the key (the route checks it: `rendition_urls.accepts`)
)
THUMBNAILS = "/thumbnails/*"  # public too with APERCU_PUBLIC_THUMBNAILS (for <img> tags that cannot send a key)
UPLOAD = ("POST", "/images")  # an upload: backpressure and the upload rate limit apply
UPLOADS = (UPLOAD, ("POST", "/uploads/"))  # ...and to a resumable upload's creation (`api.tus`)
BUSY_RETRY_AFTER = 5  # seconds: about how long a worker takes to make a dent in the queue
EXTENSION = "apercu.access"
ADMIN = frozenset({"admin"})  # what a key set the old way (a bare key) may do: everything, in every tenant
SCRAPER = Caller("metrics-token", DEFAULT_TENANT, frozenset())  # APERCU_METRICS_TOKEN's bearer: /metrics alone
HASHED = re.compile(r"sha256:([0-9a-fA-F]{64})")  # a key written as its digest, so that the file holds no secret
FILE_LINE = "`<name> <tenant> <scopes> <key>` or a bare key"

Header = Callable[[str], str | None]  # a request header by name (case-insensitive), None when absent
Digest = bytes  # SHA-256 of a key
UploadCheck = Callable[[Header, str], ApiError | None]  # another rule for an upload's head, given the client address


def is_public(path: str, patterns: Iterable[str]) -> bool:
    return any(path.startswith(p[:-1]) if p.endswith("*") else path == p for p in patterns)


def digest_of(key: str) -> Digest:
    return hashlib.sha256(key.encode("utf-8", "replace")).digest()


class ApiKeys:
    """The accepted API keys (not blob keys, not idempotency keys), kept as SHA-256 digests with the identity each
    carries. A candidate's digest is compared with every key's in constant time (hmac.compare_digest, which then
    also sees equal lengths), with no early exit on a match, and the match's identity is picked by its index rather
    than by a branch on which key matched: neither timing nor length tells a caller how close a guess came, or
    which key matched. A digest given twice keeps its first identity."""

    def __init__(self, keys: Iterable[tuple[Digest, Caller]]) -> None:
        found: dict[Digest, Caller] = {}
        for digest, who in keys:
            found.setdefault(digest, who)
        self._entries = tuple(found.items())
        self._digests = tuple(found)
        self._callers: tuple[Caller | None, ...] = (None, *found.values())  # index 0: no match

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __add__(self, other: ApiKeys) -> ApiKeys:
        return ApiKeys(self._entries + other.entries())

    def entries(self) -> tuple[tuple[Digest, Caller], ...]:
        return self._entries

    def match(self, candidate: str | None) -> Caller | None:
        """The identity of the key `candidate` is, or None."""
        if candidate is None:
            return None
        digest = digest_of(candidate)
        index = 0
        for number, key in enumerate(self._digests, 1):
            index |= number * hmac.compare_digest(digest, key)
        return self._callers[index]


def key_digest(text: str, where: str) -> Digest:
    """A key as the file or APERCU_API_KEYS writes it: `sha256:<64 hex digits>` (its digest), else the key itself
    (held to config.API_KEY). SettingError naming `where`, never the key."""
    hashed = HASHED.fullmatch(text)
    if hashed:
        return bytes.fromhex(hashed[1])
    if text.startswith("sha256:"):
        raise SettingError(f"{where}: a sha256: key is not 64 hexadecimal digits")
    API_KEY.check(text, where)
    return digest_of(text)


def parse_key_line(line: str, where: str, default_name: str) -> tuple[Digest, Caller]:
    """One line of APERCU_API_KEYS_FILE (not blank, not a comment): `<name> <tenant> <scopes> <key>`, or a bare key,
    set the old way: admin in the default tenant, named `default_name`. SettingError naming `where`, never a
    value (a line with its fields in the wrong order would hold the key where a name is expected)."""
    fields = line.split()
    if len(fields) == 1:
        return key_digest(fields[0], where), Caller(default_name, DEFAULT_TENANT, ADMIN)
    if len(fields) != 4:
        raise SettingError(f"{where} has {len(fields)} fields: expected {FILE_LINE}")
    name, tenant, scopes, key = fields
    try:
        who = Caller(caller.checked_name(name, "the name"), caller.checked_name(tenant, "the tenant"),
                     frozenset(caller.parse_scopes(scopes)))
    except BadIdentity as exc:
        raise SettingError(f"{where}: {exc}") from None
    return key_digest(key, where), who


def load_api_keys(settings: Settings) -> ApiKeys:
    """The keys of APERCU_API_KEYS (admin, parsed and checked with the settings) and APERCU_API_KEYS_FILE (a key
    per line, `parse_key_line`; blank lines and `#` comments ignored), read once, at start. SettingError for a file
    that cannot be read, that names no key (a typo must not go unnoticed), with a bad line or a name given twice.
    Messages name the setting and the line, never a key."""
    keys = enumerate(settings.api_keys, 1)
    found = [(digest_of(key), Caller(f"api-key-{n}", DEFAULT_TENANT, ADMIN)) for n, key in keys]
    if settings.api_keys_file:
        found += _keys_in_file(settings.api_keys_file)
    return ApiKeys(found)


def _keys_in_file(path: str) -> list[tuple[Digest, Caller]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError(f"APERCU_API_KEYS_FILE={path!r} cannot be read: {exc}") from None
    found: list[tuple[Digest, Caller]] = []
    names: dict[str, int] = {}  # the line of each name, and of each key (its digest)
    digests: dict[Digest, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.strip().startswith("#"):
            where = f"APERCU_API_KEYS_FILE line {number}"
            digest, who = parse_key_line(line, where, f"keys-file-line-{number}")
            if names.setdefault(who.name, number) != number:
                raise SettingError(f"{where}: the name {who.name!r} is line {names[who.name]}'s already")
            if digests.setdefault(digest, number) != number:  # which identity would it carry?
                raise SettingError(f"{where}: the key is line {digests[digest]}'s already")
            found.append((digest, who))
    if not found:
        raise SettingError(f"APERCU_API_KEYS_FILE={path!r} holds no key")
    return found


def catalog_api_keys(snapshot: KeySnapshot) -> ApiKeys:
    return ApiKeys((bytes.fromhex(key.sha256), _caller_of(key)) for key in snapshot.active)


def _caller_of(key: KeyRecord) -> Caller:
    return Caller(key.name, key.tenant, frozenset(key.scopes))


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
    """The rule (see the module docstring): `decide` returns the caller of a request head, or its refusal."""

    def __init__(self, settings: Settings, api_keys: ApiKeys, catalog_keys: Keys, cors: Cors, load: Load) -> None:
        self.settings, self.api_keys, self.catalog_keys = settings, api_keys, catalog_keys
        self.cors, self.load = cors, load
        self.public = public_paths(settings)
        self.max_pending = settings.max_pending
        self.min_free_mb = settings.min_free_mb
        self.scopes = Scopes()
        self._token = digest_of(settings.metrics_token) if settings.metrics_token else None
        self._combined: tuple[KeySnapshot | None, ApiKeys] = (None, api_keys)  # (the snapshot it has, every key)
        self.keys()  # the catalog's keys are read at start: a catalog that cannot answer stops it
        self.upload_checks: list[UploadCheck] = []  # added by api.rate_limit

    @classmethod
    def for_app(cls, app: Flask) -> Gate:
        """Built once per app, at start: the keys are read and the CORS list checked now (ValueError if bad)."""
        service = app.extensions["apercu"]
        settings: Settings = service.settings
        catalog = service.storage.catalog
        load = Load(pending_count(catalog.images.counts), settings.data_dir)
        return cls(settings, load_api_keys(settings), catalog.keys, Cors(settings.cors_origins), load)

    def keys_required(self) -> bool:
        return keys_required(self.settings, self.catalog_keys)

    def keys(self) -> ApiKeys:
        """The settings' keys and the catalog's, as last read (made again when the catalog's snapshot changes)."""
        snapshot = self.catalog_keys.snapshot()
        made_of, keys = self._combined
        if snapshot is not made_of:
            keys = self.api_keys + catalog_api_keys(snapshot)
            self._combined = (snapshot, keys)
        return keys

    def check(self, method: str, path: str, header: Header, address: str = "") -> ApiError | None:
        """The refusal of a request head, or None (what the server asks before it receives a body)."""
        decided = self.decide(method, path, header, address)
        return decided if isinstance(decided, ApiError) else None

    def decide(self, method: str, path: str, header: Header, address: str = "") -> Caller | ApiError:
        """Key and scope first (an anonymous caller learns nothing about the load), then, for an upload,
        backpressure."""
        presented = presented_api_key(header)
        if path == METRICS and not self.settings.metrics_public:
            return self._scraper(presented)
        required = self.keys_required()
        who = self.keys().match(presented) if required else ANONYMOUS
        if who is None:
            if not self._needs_no_key(method, path, header):
                return self._unauthorized(presented is None)
            who = NOBODY
        elif required and not is_public(path, self.public):
            scope = self.scopes.of(method, path)
            if scope is not None and not who.may(scope):
                return insufficient_scope(scope)
        refusal = self._upload_refusal(header, address) if (method, path) in UPLOADS else None
        return refusal or who

    def _upload_refusal(self, header: Header, address: str) -> ApiError | None:
        """The other rules for an upload's head (`upload_checks`: the rate limit), then backpressure."""
        refusals = (check(header, address) for check in self.upload_checks)
        return next(filter(None, refusals), None) or self._backpressure()

    def _scraper(self, presented: str | None) -> Caller | ApiError:
        """/metrics with APERCU_METRICS_PUBLIC=false: APERCU_METRICS_TOKEN's bearer, or an admin key; never a caller
        without a key, even where no key is required elsewhere."""
        who = self.keys().match(presented)
        if presented is not None and self._token is not None and hmac.compare_digest(digest_of(presented), self._token):
            return SCRAPER
        if who is None:
            return self._unauthorized(presented is None)
        return who if who.admin else insufficient_scope("admin")

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


def insufficient_scope(scope: Scope) -> ApiError:
    return ApiError(403, f"this API key does not hold the {scope!r} scope, which this request needs",
                    "insufficient_scope")


class Scopes:
    """The scope each operation declares (`api.contract`), found from a request's method and path as the app's
    router would (HEAD as GET): the gate needs it before Flask routes the request, in the server, before the
    body. None for a path no operation has (a 404 or 405 then, for any valid key)."""

    def __init__(self) -> None:
        self._router = Map([Rule(op.rule, endpoint=str(n), methods=[op.method]) for n, op in enumerate(OPERATIONS)])
        self._adapter = self._router.bind("apercu")

    def of(self, method: str, path: str) -> Scope | None:
        try:
            endpoint, _arguments = self._adapter.match(path, method)
        except HTTPException:  # not found, method not allowed, or a redirect (a missing trailing slash)
            return None
        return OPERATIONS[int(endpoint)].scope


def public_paths(settings: Settings) -> tuple[str, ...]:
    """What needs no key under these settings: PUBLIC_PATHS (but /metrics with APERCU_METRICS_PUBLIC=false), and
    thumbnails with APERCU_PUBLIC_THUMBNAILS."""
    public = PUBLIC_PATHS if settings.metrics_public else tuple(p for p in PUBLIC_PATHS if p != METRICS)
    return public + ((THUMBNAILS,) if settings.public_thumbnails else ())


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
        decided = the_gate.decide(request.method, path, header, address)
        if isinstance(decided, ApiError):
            return decided.response()
        caller.remember(decided)
        return None

    @app.after_request
    def _cors(response: Response) -> Response:
        if cors.enabled:
            response.vary.add("Origin")
            for name, value in cors.response_headers(request.headers.get("Origin")):
                response.headers[name] = value
        return response
