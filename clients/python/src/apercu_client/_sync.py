"""`Client`: the API with blocking calls (httpx.Client); safe to share between threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any, TypeVar

import httpx

from apercu_client import _core as core
from apercu_client import _tus
from apercu_client._core import Flow, Images
from apercu_client._tus import CHUNK_SIZE
from apercu_client.bodies import Progress, Source
from apercu_client.errors import Closed
from apercu_client.models import Image, Page, ServiceInfo, Upload

T = TypeVar("T")


class Client(core.ClientBase):
    """apercu's API at `base_url` (which may end in a path prefix): `Client(base_url, api_key=, url_key=, retries=,
    **httpx_kwargs)`. `api_key` is sent as X-API-Key; `url_key` (the deployment's APERCU_URL_KEY) signs rendition
    URLs. Any other keyword goes to `httpx.Client` as it is: `proxy`, `verify`, `cert`, `timeout`, `transport`,
    `trust_env` (on by default: HTTPS_PROXY, SSL_CERT_FILE...)."""

    _http: httpx.Client

    def _open(self, options: dict[str, Any]) -> None:
        self._http = httpx.Client(**options)
        self._closed = threading.Event()

    def index(self) -> ServiceInfo:
        """The service's status and version, and who the API key is."""
        return self._run(self._ops.index())

    def upload(
        self, source: Source, *, filename: str | None = None, idempotency_key: str | None = None,
        callback_url: str | None = None, wait: float | None = None, progress: Progress | None = None,
    ) -> Upload:
        """Upload a path, bytes or a binary file object (`filename`: the name the service shows; the path's by
        default). An `idempotency_key` makes running it again return the first upload's image (one is made up
        when none is given, so that the client's own retries never make two); `wait` seconds, the answer's `image`
        is the image once processed (or as it is then); `progress(sent, size)` is told the bytes sent."""
        return self._run(self._upload(source, filename, idempotency_key, callback_url, wait, progress))

    def upload_resumable(
        self, path: str | os.PathLike[str], *, filename: str | None = None, idempotency_key: str | None = None,
        wait: float | None = None, progress: Progress | None = None, chunk_size: int = CHUNK_SIZE,
        checksum: bool = False, remember: bool = True,
    ) -> Upload:
        """Upload a file by tus (the service's `/uploads/`), `chunk_size` bytes per request, each with its sha256
        when `checksum`: a cut connection costs at most the chunk in flight, which is sent again after asking
        the service where the upload stands (as `retries` allows). With `remember`, the upload's URL is kept in the
        client's `resume_store` until the image exists, so that the same call in another process (after this
        one was killed) continues it. The result is `upload`'s, `resumed_from` saying where it went on from."""
        return self._run(_tus.flow(self, path, filename=filename, idempotency_key=idempotency_key, wait=wait,
                                   progress=progress, chunk_size=chunk_size, checksum=checksum, remember=remember))

    def upload_url(self, url: str, *, idempotency_key: str | None = None, wait: float | None = None) -> Upload:
        """Have the service fetch the image from `url` (public http(s) hosts, unless the deployment allows others)."""
        return self._run(self._ops.upload_url(url, idempotency_key or core.new_key(), wait))

    def get(self, image_id: str, *, wait: float | None = None) -> Image:
        """The image; with `wait` (at most 30 s), once processing has ended or that time has passed."""
        return self._run(self._ops.get(image_id, wait))

    def wait(self, image_id: str, timeout: float = 60.0) -> Image:
        """The image once processing has ended, or as it is after `timeout` seconds (see `Image.final`)."""
        return self._run(self._ops.wait(image_id, timeout))

    def pages(self, *, page_size: int | None = None, cursor: str | None = None) -> Iterator[Page]:
        """Every page of the list, newest first, from `cursor` (a page's `next_cursor`) or the newest."""
        while True:
            page = self._run(self._ops.page(page_size, cursor))
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def list(self, *, page_size: int | None = None) -> Iterator[Image]:
        """Every image, newest first, fetched a page at a time as the iteration goes."""
        for page in self.pages(page_size=page_size):
            yield from page.items

    def search(
        self, *, sha256: str | None = None, similar_to: str | None = None, max_distance: int | None = None,
        limit: int | None = None,
    ) -> Images:
        """The images whose original has these bytes (`sha256`), or that look like the image `similar_to`
        (perceptual hashes within `max_distance` bits, nearest first, each with its `distance`)."""
        return self._run(self._ops.search(sha256, similar_to, max_distance, limit))

    def delete(self, image_id: str) -> None:
        """Delete the image, its original, thumbnails and renditions (NotFound if there is no such image)."""
        self._run(self._ops.delete(image_id))

    def close(self) -> None:
        """Close the connections; calls waiting to try again (in other threads too) give up with Closed."""
        self._closed.set()
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _run(self, flow: Flow[T]) -> T:
        step = core.advance(flow, None)
        while not isinstance(step, core.Done):
            step = core.advance(flow, self._perform(step))
        return step.value

    def _perform(self, step: core.Step) -> core.Answer | httpx.TransportError | None:
        if isinstance(step, core.Pause):
            if self._closed.wait(step.seconds):
                raise Closed("the client was closed")
            return None
        if self._closed.is_set():
            raise Closed("the client was closed")
        content = None if step.body is None else step.body.chunks()
        try:
            return core.Answer.of(self._http.send(self._http.build_request(**step.request_args(), content=content)))
        except httpx.TransportError as exc:
            return exc
