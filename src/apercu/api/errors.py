"""Errors as JSON, always: `{"error": {"code": ..., "message": ...}}`, never an HTML page.

One type, `ApiError` (status, code, message, headers), for every refusal: routes raise it for what the client got
wrong, the access gate (`api.access`) returns it for a request it turns away, and the HTTP server (`api.server`)
raises it for what it refuses before Flask runs (a malformed request line, headers too large, a body that stalls
or ends early). One body, `ApiError.body`, for all of them: the app answers with `ApiError.response`, the server
with `ApiError.http_message`. Werkzeug's own HTTP errors (404 for an unknown route, 405, 413 from the body limit)
and the service's are turned into ApiErrors too; an unavailable dependency (`storage.outages.classify`) is a 503
naming it, counted and logged once per outage by `api.outage_breaker`, and a full disk (`outages.out_of_space`,
whichever of the local store or the SQLite catalog met it) a 507 like the access gate's; anything else is a 500
logged with its trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from http import HTTPStatus

from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

from apercu import service
from apercu.api import outage_breaker
from apercu.storage.outages import Dependency, classify, out_of_space

HeaderField = tuple[str, str]  # (name, value)
JSON = "application/json"
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

    def body(self) -> bytes:
        """The JSON body of every error: the one serializer, which both answers below are built from."""
        error = {"error": {"code": self.code, "message": self.message}}
        return json.dumps(error, separators=(",", ":")).encode() + b"\n"  # as Flask's jsonify writes it

    def response(self) -> Response:
        """The answer as the application gives it."""
        return Response(self.body(), status=self.status, headers=[*self.headers, NO_STORE], mimetype=JSON)

    def http_message(self) -> bytes:
        """The whole HTTP/1.1 answer, as the server gives it before (or without) the application: the connection
        closes after it."""
        body = self.body()
        extra = "".join(f"{name}: {value}\r\n" for name, value in (*self.headers, NO_STORE))
        head = (
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}\r\nContent-Type: {JSON}\r\n{extra}"
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
