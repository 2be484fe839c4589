"""Errors as JSON, always: `{"error": {"code": ..., "message": ...}}`, never an HTML page; or, for a client whose
`Accept` prefers `application/problem+json`, RFC 9457 problem details, with the same status, headers and code.

One type, `ApiError` (status, code, message, headers), for every refusal: routes raise it for what the client got
wrong, the access gate (`api.access`) returns it for a request it turns away, and the HTTP server (`api.server`)
raises it for what it refuses before Flask runs (a malformed request line, headers too large, a body that stalls
or ends early). One body, `ApiError.body`, for all of them: the app answers with `ApiError.response`, the server
with `ApiError.http_message`. Werkzeug's own HTTP errors (404 for an unknown route, 405, 413 from the body limit)
and the service's are turned into ApiErrors too; an unavailable dependency (`storage.outages.classify`) is a 503
naming it, counted and logged once per outage by `api.outage_breaker`, and a full disk (`outages.out_of_space`,
whichever of the local store or the SQLite catalog met it) a 507 like the access gate's; anything else is a 500
logged with its trace.

Problem details (`Asked.problem`): `type` is `/docs/errors#<code>`, `title` the status's phrase, `status`,
`detail` the message, `instance` the request's path, and the extension member `code`, so that a client switching
to them keeps the code it tested. Why that `type`: it must name the problem (RFC 9457 makes it the primary
identifier), so one per code, and be the same on every deployment so that clients can compare it; apercu has no
domain of its own to make an absolute URI from (and a made-up one could come to point anywhere), so it is a
relative reference with the full path, as section 3.1.1 recommends for those, under `/docs`, where the service's
documentation lives, and with the code as its anchor. `title` is the status's phrase because it must not vary
between occurrences, which a code's message does. Errors vary on Accept now, yet carry no `Vary: Accept`: they
are `no-store` (NO_STORE), so no cache holds one to pick among. The app's answers learn the Accept header and path
from the request in context; the server's (`http_message`) from the parsed head it was given, when there is one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, current_app, has_request_context, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_accept_header

from apercu import service
from apercu.api import outage_breaker
from apercu.storage.outages import Dependency, classify, out_of_space

HeaderField = tuple[str, str]  # (name, value)
JSON = "application/json"
PROBLEM = "application/problem+json"  # RFC 9457
PROBLEM_TYPE = "/docs/errors#{code}"  # a problem's `type` (see the module's docstring for why this form)
PATH_CHARACTERS = "/%!$&'()*+,;=:@-._~"  # kept as they are in a problem's `instance`; anything else is escaped
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "not_ready",
    413: "too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
    507: "insufficient_storage",
}
UNAVAILABLE: dict[Dependency, tuple[str, str]] = {  # a 503's code, and what its message says is unavailable
    "storage": ("storage_unavailable", "the blob store"),
    "catalog": ("catalog_unavailable", "the catalog database"),
    "broker": ("broker_unavailable", "the task broker"),
}
OUTAGE_RETRY_AFTER = "2"
# Every error goes out with it: an error is about this moment (a URL that expired, a render still under way, an
# outage), and a shared cache must not answer the next request with it.
NO_STORE: HeaderField = ("Cache-Control", "no-store")


@dataclass(frozen=True)
class Asked:
    """What a request says of the error it wants: its Accept header and its path. Nothing (the JSON error) where
    there is no request to ask, such as a head the server could not parse."""

    accept: str | None = None
    path: str | None = None

    @classmethod
    def of_app(cls) -> Asked:
        """The application's current request's, if there is one."""
        if not has_request_context():
            return cls()
        return cls(request.headers.get("Accept"), request.script_root + request.path)

    @property
    def problem(self) -> bool:
        """Whether the client prefers problem details to the JSON error (by Accept's q-values and specificity; a
        tie, `*/*` and no Accept at all keep the JSON error, as before problem details were offered)."""
        if not self.accept:
            return False
        return parse_accept_header(self.accept, MIMEAccept).best_match([JSON, PROBLEM]) == PROBLEM


NOTHING_ASKED = Asked()


class ApiError(Exception):
    """The one refusal: a request answered with an error instead of what it asked for, wherever that is decided
    (a route; the access gate, `api.access`; the HTTP server, `api.server`, before the app runs). `code` defaults
    to the status's usual one (CODES); `headers` go out with the answer (WWW-Authenticate, Retry-After...)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: Iterable[HeaderField] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.headers = tuple(headers)

    def with_headers(self, *headers: HeaderField) -> ApiError:
        """The same refusal with more headers (CORS, the request id)."""
        return ApiError(self.status, self.message, self.code, (*self.headers, *headers))

    def body(self, asked: Asked = NOTHING_ASKED) -> bytes:
        """The body of every error, as the request asked: the one serializer, which both answers below use."""
        document: dict[str, Any] = {"error": {"code": self.code, "message": self.message}}
        if asked.problem:
            document = {"type": PROBLEM_TYPE.format(code=self.code), "title": HTTPStatus(self.status).phrase,
                        "status": self.status, "detail": self.message, "code": self.code}
            if asked.path:
                document["instance"] = quote(asked.path, safe=PATH_CHARACTERS)
        return json.dumps(document, separators=(",", ":")).encode() + b"\n"  # as Flask's jsonify writes it

    def response(self) -> Response:
        """The answer as the application gives it, to its current request."""
        asked = Asked.of_app()
        return Response(self.body(asked), status=self.status, headers=[*self.headers, NO_STORE],
                        mimetype=PROBLEM if asked.problem else JSON)

    def http_message(self, asked: Asked = NOTHING_ASKED) -> bytes:
        """The whole HTTP/1.1 answer, as the server gives it before (or without) the application: the connection
        closes after it."""
        body = self.body(asked)
        extra = "".join(f"{name}: {value}\r\n" for name, value in (*self.headers, NO_STORE))
        head = (
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}\r\n"
            f"Content-Type: {PROBLEM if asked.problem else JSON}\r\n{extra}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + body


NO_IMAGE = "no image with this id"
RETRY_AFTER_SECONDS = "1"
INTERNAL_ERROR = ApiError(500, "internal server error")
NO_SPACE = ApiError(507, "the data disk is full: retry once space is freed")


def unavailable(dependency: Dependency) -> ApiError:
    """The answer to a request that needed `dependency` while it was away: retry shortly, this is no bug."""
    code, what = UNAVAILABLE[dependency]
    message = f"{what} is unavailable; retry after {OUTAGE_RETRY_AFTER} s"
    return ApiError(503, message, code, [("Retry-After", OUTAGE_RETRY_AFTER)])


def register(app: Flask) -> None:
    """Every error the app answers, as an ApiError's response."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return exc.response()

    @app.errorhandler(service.NotFound)
    def _not_found(_exc: service.NotFound) -> Response:
        return ApiError(404, NO_IMAGE).response()

    @app.errorhandler(service.NotReady)
    def _not_ready(exc: service.NotReady) -> Response:
        return ApiError(409, str(exc), headers=[("Retry-After", RETRY_AFTER_SECONDS)]).response()

    @app.errorhandler(service.NoFingerprint)
    def _no_fingerprint(exc: service.NoFingerprint) -> Response:
        return ApiError(422, str(exc), "no_phash").response()

    @app.errorhandler(service.NoThumbnail)
    def _no_thumbnail(exc: service.NoThumbnail) -> Response:
        return ApiError(404, f"no thumbnail: {exc}", "no_thumbnail").response()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() == "allow"]
        return ApiError(exc.code or 500, exc.description or exc.name, headers=headers).response()

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        dependency = classify(exc)
        if dependency is not None and out_of_space(exc):
            outage_breaker.out_of_space(dependency, exc)
            return NO_SPACE.response()
        if dependency is not None:
            outage_breaker.refused(dependency, exc)
            return unavailable(dependency).response()
        current_app.logger.exception("unhandled error")
        return INTERNAL_ERROR.response()
