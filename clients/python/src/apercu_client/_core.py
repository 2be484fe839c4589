"""The one core of `Client` and `AsyncClient`: what each operation asks and how its answers are read, written once
as a flow (a generator that yields the HTTP calls and pauses it needs and is sent their answers), with no I/O of
its own. Each client only drives flows: the sync one with blocking httpx calls and sleeps, the async one with
awaited ones. Retries, waiting for an image, and uploading-then-waiting are therefore the same code in both."""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast
from urllib.parse import quote

import httpx

from apercu_client.bodies import Body, Progress, Source, multipart
from apercu_client.errors import ApiError, AuthenticationError, NotFound, Unreachable
from apercu_client.models import Image, Page, ServiceInfo, Upload
from apercu_client.resume import ResumeStore
from apercu_client.signing import rendition_path

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:5000"
VERSION = "0.1.0"
MAX_WAIT = 30  # the API's longest ?wait=
MIN_POLL = 0.25  # seconds between two polls answered at once with the same status (a server ignoring ?wait=)
RETRY_STATUSES = frozenset({429, 502, 503, 504})
NOT_RETRIED = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)  # the same again would fail the same way
# Reads may take longer than the API's longest ?wait=; a host that does not answer is given up sooner.
DEFAULT_TIMEOUT = httpx.Timeout(MAX_WAIT + 30.0, connect=10.0)


@dataclass(frozen=True)
class Retries:
    """How a request is tried again: up to `connect` more times when it does not get through (after 0.5, 1, 2,
    4, then 8 s), and up to `busy` more times when the service answers 429, 502, 503 or 504 (after its
    Retry-After, at most `max_delay` s). Safe for uploads too: every upload carries an idempotency key."""

    connect: int = 4
    busy: int = 30
    max_delay: float = 30.0

    @staticmethod
    def backoff(failures: int) -> float:
        return float(min(8.0, 0.5 * 2 ** (failures - 1)))


RETRIES = Retries()
Images = list[Image]  # (a name the clients can use in annotations: their `list` method hides the builtin there)


@dataclass(frozen=True)
class Call:
    """One HTTP request a flow needs; `body`, an upload's, is sent anew at each attempt."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    body: Body | None = None

    def request_args(self) -> dict[str, Any]:
        """httpx's `build_request` arguments but the content (an iterator of one kind or the other)."""
        headers = self.headers | (self.body.headers if self.body else {})
        return {"method": self.method, "url": self.path, "params": self.params, "headers": headers,
                "json": self.json}


@dataclass(frozen=True)
class Pause:
    seconds: float  # before the next try (a flow's only other step than a call)


@dataclass(frozen=True)
class Answer:
    """A whole answer: status, headers, body."""

    status: int
    headers: httpx.Headers
    body: bytes

    @classmethod
    def of(cls, response: httpx.Response) -> Answer:
        return cls(response.status_code, response.headers, response.content)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def retry_after(self, cap: float) -> float | None:
        """Its Retry-After in seconds (the delta form the API sends), capped; None without one."""
        try:
            return min(cap, max(0.0, float(self.headers.get("retry-after", ""))))
        except ValueError:
            return None

    def error(self) -> ApiError:
        """The API's error (`{"error": {"code", "message"}}`) as an exception; for a body that is not one (a proxy's
        page), the start of its text."""
        body = self.json()
        detail = body.get("error") if isinstance(body, dict) else None
        if isinstance(detail, dict):
            code, message = str(detail.get("code", "")), str(detail.get("message", ""))
        else:
            code = "http_error"
            message = self.body[:200].decode("utf-8", "replace").strip() or httpx.codes.get_reason_phrase(self.status)
        kind = {401: AuthenticationError, 403: AuthenticationError, 404: NotFound}.get(self.status, ApiError)
        return kind(self.status, code, message, self.retry_after(math.inf))

    def ok(self) -> Any:
        """The JSON of a 2xx answer; the error of any other."""
        if not 200 <= self.status < 300:
            raise self.error()
        return self.json()

    def read(self, reader: Callable[[Any], T]) -> T:
        """A 2xx answer's JSON read into its result; one that is not the API's shape (another service at that URL,
        a proxy's page) is an ApiError `unexpected_answer`, not a KeyError from deep inside."""
        data = self.ok()
        try:
            return reader(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ApiError(self.status, "unexpected_answer", f"not an answer of apercu's API ({exc!r})") from exc


Step = Call | Pause
Flow = Generator[Step, Answer | None, T]


@dataclass(frozen=True)
class Done(Generic[T]):
    value: T


def advance(flow: Flow[T], outcome: Answer | httpx.TransportError | None) -> Step | Done[T]:
    """The flow's next step once it is told the last one's outcome (an answer, a transport error, or None after
    a pause or to start); Done with its result when it has ended."""
    try:
        if isinstance(outcome, httpx.TransportError):
            return flow.throw(outcome)
        return flow.send(outcome)
    except StopIteration as done:
        return Done(cast(T, done.value))


def describe(exc: BaseException) -> str:
    """A transport failure in a few words a person can act on (the OS's reason where there is one)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection was closed by the other end"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


def exchange(call: Call, retries: Retries) -> Flow[Answer]:
    """`call` until it gets an answer that is not "busy, try later", as `retries` allows. The last busy answer is
    returned as it is; a request that never got through raises Unreachable."""
    failures = busy = 0
    while True:
        try:
            answer = yield call
        except httpx.TransportError as exc:
            failures += 1
            if failures > retries.connect or isinstance(exc, NOT_RETRIED):
                raise Unreachable(describe(exc)) from exc
            delay = retries.backoff(failures)
        else:
            assert answer is not None
            busy += answer.status in RETRY_STATUSES
            if answer.status not in RETRY_STATUSES or busy > retries.busy:
                return answer
            after = answer.retry_after(retries.max_delay)
            delay = retries.backoff(busy) if after is None else after
        yield Pause(delay)


def image_path(image_id: str) -> str:
    return f"/images/{quote(image_id, safe='')}"


class Operations:
    """Every operation as a flow, with the settings they share."""

    def __init__(self, retries: Retries) -> None:
        self.retries = retries

    def index(self) -> Flow[ServiceInfo]:
        answer = yield from exchange(Call("GET", "/"), self.retries)
        return answer.read(ServiceInfo.from_json)

    def get(self, image_id: str, wait: float | None = None) -> Flow[Image]:
        params = {} if wait is None else {"wait": f"{min(float(MAX_WAIT), max(0.0, wait)):g}"}
        answer = yield from exchange(Call("GET", image_path(image_id), params), self.retries)
        return answer.read(Image.from_json)

    def wait(self, image_id: str, timeout: float) -> Flow[Image]:
        """GET with ?wait= until the image is final or `timeout` seconds have passed: the image as it is then."""
        deadline, before = time.monotonic() + timeout, None
        while True:
            asked = time.monotonic()
            image = yield from self.get(image_id, min(MAX_WAIT, max(0, math.ceil(deadline - asked))))
            now = time.monotonic()
            if image.final or now >= deadline:
                return image
            if image.status == before and now - asked < MIN_POLL:
                yield Pause(MIN_POLL)
            before = image.status

    def upload(self, body: Body, key: str, wait: float | None) -> Flow[Upload]:
        call = Call("POST", "/images", headers={"Idempotency-Key": key}, body=body)
        return (yield from self._accepted(call, wait))

    def upload_url(self, url: str, key: str, wait: float | None) -> Flow[Upload]:
        call = Call("POST", "/images", headers={"Idempotency-Key": key}, json={"url": url})
        return (yield from self._accepted(call, wait))

    def _accepted(self, call: Call, wait: float | None) -> Flow[Upload]:
        answer = yield from exchange(call, self.retries)
        replayed = answer.headers.get("idempotent-replayed") == "true"
        upload = answer.read(lambda data: Upload.from_json(data, replayed))
        if wait is None:
            return upload
        image = yield from self.wait(upload.id, wait)
        return Upload(image.id, image.status, upload.links, upload.duplicate, upload.replayed, image)

    def page(self, limit: int | None, cursor: str | None) -> Flow[Page]:
        params = {k: str(v) for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
        answer = yield from exchange(Call("GET", "/images", params), self.retries)
        return answer.read(Page.from_json)

    def search(
        self, sha256: str | None, similar_to: str | None, max_distance: int | None, limit: int | None
    ) -> Flow[list[Image]]:
        if (sha256 is None) == (similar_to is None):
            raise ValueError("search by one of sha256= or similar_to=")
        given = {"sha256": sha256, "similar_to": similar_to, "max_distance": max_distance, "limit": limit}
        params = {k: str(v) for k, v in given.items() if v is not None}
        answer = yield from exchange(Call("GET", "/images", params), self.retries)
        return list(answer.read(Page.from_json).items)

    def delete(self, image_id: str) -> Flow[None]:
        answer = yield from exchange(Call("DELETE", image_path(image_id)), self.retries)
        answer.ok()


def httpx_options(base_url: str, api_key: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """The httpx client's arguments: the caller's (proxy, verify, cert, timeout, transport, trust_env, ...) over
    ours, with the API key and our User-Agent added to any headers given."""
    headers = {"User-Agent": f"apercu-client/{VERSION}", **dict(options.pop("headers", None) or {})}
    if api_key:
        headers["X-API-Key"] = api_key
    return {"timeout": DEFAULT_TIMEOUT, **options, "base_url": base_url, "headers": headers}


def new_key() -> str:
    """An idempotency key for an upload that was given none: its own retries then never make a second image."""
    return f"apercu-client-{uuid.uuid4().hex}"


class ClientBase:
    """What `Client` and `AsyncClient` share besides driving flows: their settings, the operations' flows, signing.
    `api_key` is sent as X-API-Key; `url_key` (the deployment's APERCU_URL_KEY) signs rendition URLs; any other
    keyword goes to the httpx client as it is (`proxy`, `verify`, `cert`, `timeout`, `transport`, `trust_env`).
    `resume_store` is where resumable uploads keep their URLs between runs (a ResumeStore or its file's path;
    by default $XDG_CACHE_HOME/apercu/uploads.json)."""

    def __init__(
        self, base_url: str = DEFAULT_URL, *, api_key: str | None = None, url_key: str | None = None,
        retries: Retries = RETRIES, resume_store: ResumeStore | str | os.PathLike[str] | None = None,
        **httpx_kwargs: Any,
    ) -> None:
        self.base_url, self.url_key = base_url.rstrip("/"), url_key
        self.resume_store = resume_store if isinstance(resume_store, ResumeStore) else ResumeStore(resume_store)
        self._ops = Operations(retries)
        self._open(httpx_options(self.base_url, api_key, httpx_kwargs))

    def _open(self, options: dict[str, Any]) -> None:
        """Make the httpx client (`self._http`), sync or async, with these arguments."""
        raise NotImplementedError

    def rendition_url(
        self, image_id: str, options: str | Sequence[str] = (), ext: str = "auto", *, expires_in: float | None = None
    ) -> str:
        """The absolute URL of a rendition (`options` as `"w:400/h:300"`, or `p:<preset>`), signed with the client's
        `url_key` (the deployment's APERCU_URL_KEY; without one, `unsafe`, which only a deployment without API keys
        accepts); `expires_in` seconds from now, it is refused."""
        expires = None if expires_in is None else int(time.time() + expires_in)
        return self.base_url + rendition_path(image_id, options, ext, key=self.url_key, expires=expires)

    def _upload(
        self, source: Source, filename: str | None, idempotency_key: str | None, callback_url: str | None,
        wait: float | None, progress: Progress | None,
    ) -> Flow[Upload]:
        fields = {} if callback_url is None else {"callback_url": callback_url}
        return self._ops.upload(multipart(source, filename, fields, progress), idempotency_key or new_key(), wait)
