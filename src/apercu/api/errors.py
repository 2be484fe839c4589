"""Errors as JSON, always: `{"error": {"code": ..., "message": ...}}`, never an HTML page.

Routes raise `ApiError` for what the client got wrong; Werkzeug's own HTTP errors (404 for an unknown route,
405, 413 from the body limit) are rewritten into the same shape; anything else is a 500 logged with its trace.
What the HTTP server refuses before Flask runs (`apercu.api.server`: a malformed request line, headers too large,
a body that stalls or ends early) gets the same shape from `error_body`.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from apercu import service

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


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.headers = headers or {}


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    """The JSON body of an error, for the server's own answers, which have no Flask app context to jsonify in."""
    return json.dumps({"error": {"code": code or CODES.get(status, "error"), "message": message}}).encode()


def error_response(status: int, code: str, message: str, headers: Any = None) -> ResponseReturnValue:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    if headers:
        response.headers.extend(headers)
    return response


NO_IMAGE = "no image with this id"
RETRY_AFTER_SECONDS = "1"


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> ResponseReturnValue:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(service.NotFound)
    def _not_found(_exc: service.NotFound) -> ResponseReturnValue:
        return error_response(404, CODES[404], NO_IMAGE)

    @app.errorhandler(service.NotReady)
    def _not_ready(exc: service.NotReady) -> ResponseReturnValue:
        return error_response(409, CODES[409], str(exc), {"Retry-After": RETRY_AFTER_SECONDS})

    @app.errorhandler(service.InvalidCallback)
    def _invalid_callback(exc: service.InvalidCallback) -> ResponseReturnValue:
        return error_response(400, "invalid_callback_url", str(exc))

    @app.errorhandler(service.NoFingerprint)
    def _no_fingerprint(exc: service.NoFingerprint) -> ResponseReturnValue:
        return error_response(422, "no_phash", str(exc))

    @app.errorhandler(service.NoThumbnail)
    def _no_thumbnail(exc: service.NoThumbnail) -> ResponseReturnValue:
        return error_response(404, "no_thumbnail", f"no thumbnail: {exc}")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        status = exc.code or 500
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() == "allow"]
        return error_response(status, CODES.get(status, "error"), exc.description or exc.name, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ResponseReturnValue:
        current_app.logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
