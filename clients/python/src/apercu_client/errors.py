"""What a call can raise: the service's refusals (`ApiError`, with its error code, status and Retry-After), a
service that could not be reached, a source that could not be read, a client that was closed."""

from __future__ import annotations


class ApercuError(Exception):
    """Every error of this library."""


class ApiError(ApercuError):
    """The service answered with an error (`{"error": {"code", "message"}}`): `status` is the HTTP status, `code`
    the API's machine-readable code (`not_found`, `too_large`, ...), `retry_after` its Retry-After in seconds.
    Busy answers (429, 502, 503, 504) are only raised once the client's retries are spent."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class AuthenticationError(ApiError):
    """401 or 403: the API key is missing, unknown, or lacks the operation's scope."""


class NotFound(ApiError):
    """404: no such image (or not one this key's tenant may see)."""


class Unreachable(ApercuError):
    """The request did not get through (connection refused, reset, timed out) after its retries; the message says
    why in a few words, and the httpx error is the cause."""


class SourceError(ApercuError):
    """The file to upload could not be read, or changed size while it was sent: not the network's fault, so not
    retried."""


class Closed(ApercuError):
    """The client was closed while the call waited to try again: the call gives up."""
