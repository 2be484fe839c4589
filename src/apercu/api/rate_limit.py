"""Rate limits: `APERCU_RATE_LIMIT` requests per second and `APERCU_UPLOAD_RATE_LIMIT` uploads per minute, per
caller, counted where every web process and machine sees the same counts (`storage.rate_counts`: Redis when the
broker is Redis, else the catalog). Both 0 (the default): nothing is installed, nothing is counted.

What counts: every request but the probes and scrapes (/healthz, /readyz, /metrics) and static assets (the page's,
Swagger UI's), which must keep answering a client that is over its limit. A request over a limit is answered 429
`rate_limited` with `Retry-After`; every counted answer carries the IETF draft's `RateLimit-Limit`,
`RateLimit-Remaining` and `RateLimit-Reset` (seconds) of the limit nearest to being used up.

The caller: with API keys, a request that needed one is counted against its key (by the key's SHA-256, which names
it exactly as the key's name would, and is known from the head alone, before the access gate's caller exists);
anything else against the client's address (an IPv6 client by its /64, the least a network hands one host).
Signed renditions (/r/...) and public thumbnails count per address too: their URL, not a key, lets them through,
and they are fetched by the browsers of an application's users, each from its own address, so one key for all of
them would let one user's page use up everyone's. The address is the client's: the connection's, or behind a proxy
of APERCU_TRUSTED_PROXIES the one it forwards (`api.forwarded` makes it `request.remote_addr`; the server leaves a
trusted proxy's uploads to the app, so their heads are judged here too); a proxy that is not trusted is one
client, whatever it forwards.

Uploads: the access gate asks `upload_head` before the body is received (`api.access`, `Gate.upload_checks`): an
upload over a limit is refused from its headers, never stored. That only looks (`Counts.peek`); the count itself
is taken once, in the before_request hook, for every way the app runs.

When the store cannot be reached, requests are served uncounted (fail open), logged once per outage, and the store
is left alone for `RETRY_AFTER_FAILURE` seconds so that each request does not wait for it: the limits protect the
service's capacity from one client, and refusing everyone because the counter is away would do worse than any
single client could. An outage of the catalog is answered by the routes that need it anyway.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis
import sqlalchemy as sa
from flask import Flask, Response, g, request
from flask.typing import ResponseReturnValue

from apercu.api import access
from apercu.api.access import UPLOAD, UPLOADS, Header, is_public, presented_api_key
from apercu.api.errors import ApiError, HeaderField
from apercu.config import Settings
from apercu.storage.rate_counts import Counts, open_counts

NOT_COUNTED = ("/healthz", "/readyz", "/readyz/workers", "/metrics", "/static/*", "/docs/*")
RETRY_AFTER_FAILURE = 2.0  # seconds the limiter leaves an unreachable store alone
FAILURES = (redis.RedisError, sa.exc.SQLAlchemyError, OSError)
EXTENSION = "apercu.rate_limit"
_VERDICT = "apercu_rate_verdict"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    name: str  # its counters' key prefix
    allowed: int  # requests per window
    length: int  # the window, in seconds


@dataclass(frozen=True)
class Verdict:
    """One limit's state for a caller after a request: `used` requests in a window that ends in `reset` s."""

    limit: Limit
    used: int
    reset: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit.allowed - self.used)

    @property
    def refused(self) -> bool:
        return self.used > self.limit.allowed

    def headers(self) -> list[HeaderField]:
        return [("RateLimit-Limit", str(self.limit.allowed)), ("RateLimit-Remaining", str(self.remaining)),
                ("RateLimit-Reset", str(self.reset))]

    def refusal(self) -> ApiError:
        per = "second" if self.limit.length == 1 else f"{self.limit.length} s"
        message = f"more than {self.limit.allowed} {self.limit.name} per {per}: retry after {self.reset} s"
        return ApiError(429, message, "rate_limited", [("Retry-After", str(self.reset)), *self.headers()])


def tightest(verdicts: Iterable[Verdict]) -> Verdict | None:
    """The verdict to answer with: a refusal first, else the limit with the fewest requests left."""
    return min(verdicts, key=lambda v: (not v.refused, v.remaining, -v.reset), default=None)


class Limiter:
    """The limits of these settings, counted in `counts`; `clock` is the time (a test's may stand still)."""

    def __init__(self, settings: Settings, counts: Counts, clock: Callable[[], float] = time.time) -> None:
        self.requests = Limit("requests", settings.rate_limit, 1) if settings.rate_limit else None
        self.uploads = Limit("uploads", settings.upload_rate_limit, 60) if settings.upload_rate_limit else None
        self.counts, self.clock = counts, clock
        self.away_until = 0.0  # the store failed: left alone until then

    def limits_for(self, method: str, path: str) -> tuple[Limit, ...]:
        if is_public(path, NOT_COUNTED):
            return ()
        upload = self.uploads if (method, path) in UPLOADS else None
        return tuple(limit for limit in (self.requests, upload) if limit is not None)

    def hit(self, caller: str, limits: tuple[Limit, ...]) -> Verdict | None:
        """Count a request against each limit; None when nothing was counted (no limit, or the store is away)."""
        return self._ask(caller, limits, count=True)

    def peek(self, caller: str, limits: tuple[Limit, ...]) -> Verdict | None:
        """What counting one more request would answer, counting nothing."""
        return self._ask(caller, limits, count=False)

    def _ask(self, caller: str, limits: tuple[Limit, ...], count: bool) -> Verdict | None:
        now = self.clock()
        if not limits or now < self.away_until:
            return None
        verdicts = []
        try:
            for limit in limits:
                start = int(now // limit.length) * limit.length
                key = f"{limit.name}:{caller}"
                used = self.counts.hit(key, start, limit.length) if count else self.counts.peek(key, start) + 1
                verdicts.append(Verdict(limit, used, max(1, math.ceil(start + limit.length - now))))
        except FAILURES as exc:
            self._store_failed(now, exc)
            return None
        if self.away_until:
            self.away_until = 0.0
            log.warning("rate limits: their store answers again; requests are counted again")
        return tightest(verdicts)

    def _store_failed(self, now: float, exc: BaseException) -> None:
        if not self.away_until:
            log.warning("rate limits: their store cannot be reached (%s: %s); requests are served uncounted until "
                        "it can", type(exc).__name__, exc)
        self.away_until = now + RETRY_AFTER_FAILURE


def caller_of(gate: access.Gate, path: str, header: Header, address: str) -> str:
    """Whom a request counts against (see the module docstring): its key when it needed one (the gate has
    accepted it by now), else its address."""
    key = presented_api_key(header) if gate.keys_required() and not is_public(path, gate.public) else None
    if key:
        return "key:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:32]
    return "address:" + network_of(address)


def network_of(address: str) -> str:
    """An IPv4 address as it is, an IPv6 one as its /64; anything else (a Unix socket's name) as given."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def documented(method: str, path: str, operation: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """An operation of the OpenAPI document (`api.openapi`) with its 429, when a limit of `settings` counts it."""
    counted = settings.rate_limit and not is_public(path, NOT_COUNTED)
    if not (counted or (settings.upload_rate_limit and (method.upper(), path) in UPLOADS)):
        return operation
    responses = {**operation["responses"], "429": {"$ref": "#/components/responses/RateLimited"}}
    return {**operation, "responses": dict(sorted(responses.items()))}


def limiter(app: Flask) -> Limiter | None:
    found: Limiter | None = app.extensions.get(EXTENSION)
    return found


def register(app: Flask) -> None:
    """With a limit set: count every request after the access gate admitted it, refuse what is over a limit, and
    give every counted answer its RateLimit headers; and let the gate refuse an upload's head. After
    `access.register`: a request the gate refuses (no key) is not counted, and a key is known to be valid."""
    service = app.extensions["apercu"]
    settings: Settings = service.settings
    if not (settings.rate_limit or settings.upload_rate_limit):
        return
    counts = open_counts(settings.resolved_broker_url, settings.queue, settings.resolved_database_url)
    the_limiter = app.extensions[EXTENSION] = Limiter(settings, counts)
    the_gate = access.gate(app)

    def upload_head(header: Header, address: str) -> ApiError | None:
        caller = caller_of(the_gate, UPLOAD[1], header, address)
        verdict = the_limiter.peek(caller, the_limiter.limits_for(*UPLOAD))
        return verdict.refusal() if verdict is not None and verdict.refused else None

    the_gate.upload_checks.append(upload_head)

    @app.before_request
    def _count() -> ResponseReturnValue | None:
        path = request.environ.get("PATH_INFO", "")
        limits = the_limiter.limits_for(request.method, path)
        if not limits:
            return None
        caller = caller_of(the_gate, path, request.headers.get, request.remote_addr or "")
        verdict = the_limiter.hit(caller, limits)
        setattr(g, _VERDICT, verdict)
        return verdict.refusal().response() if verdict is not None and verdict.refused else None

    @app.after_request
    def _headers(response: Response) -> Response:
        verdict: Verdict | None = g.get(_VERDICT)
        if verdict is not None:
            for name, value in verdict.headers():
                response.headers[name] = value
        return response
