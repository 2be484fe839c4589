"""`AsyncClient`: the API with awaited calls (httpx.AsyncClient, on asyncio). The operations are `Client`'s, with
the same arguments and results (their documentation is there): both drive the same flows (`_core`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, TypeVar

import httpx

from apercu_client import _tus
from apercu_client._core import (
    Answer,
    ClientBase,
    Done,
    Flow,
    Images,
    Pause,
    Step,
    advance,
    new_key,
)
from apercu_client._tus import CHUNK_SIZE
from apercu_client.bodies import Progress, Source
from apercu_client.errors import Closed
from apercu_client.models import Image, Page, ServiceInfo, Upload

T = TypeVar("T")


async def _chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """An upload's body for httpx's async side. Reading a file blocks, a CHUNK at a time, as httpx's own file
    uploads do."""
    for chunk in chunks:
        yield chunk


class AsyncClient(ClientBase):
    """As `Client`, awaited: `async with AsyncClient(url, api_key=...) as apercu: await apercu.upload(...)`. Other
    keywords go to `httpx.AsyncClient` (`proxy`, `verify`, `cert`, `timeout`, `transport`, `trust_env`)."""

    _http: httpx.AsyncClient

    def _open(self, options: dict[str, Any]) -> None:
        self._http = httpx.AsyncClient(**options)
        self._closed = False

    async def index(self) -> ServiceInfo:
        return await self._run(self._ops.index())

    async def upload(
        self, source: Source, *, filename: str | None = None, idempotency_key: str | None = None,
        callback_url: str | None = None, wait: float | None = None, progress: Progress | None = None,
    ) -> Upload:
        return await self._run(self._upload(source, filename, idempotency_key, callback_url, wait, progress))

    async def upload_resumable(
        self, path: str | os.PathLike[str], *, filename: str | None = None, idempotency_key: str | None = None,
        wait: float | None = None, progress: Progress | None = None, chunk_size: int = CHUNK_SIZE,
        checksum: bool = False, remember: bool = True,
    ) -> Upload:
        return await self._run(_tus.flow(self, path, filename=filename, idempotency_key=idempotency_key, wait=wait,
                                         progress=progress, chunk_size=chunk_size, checksum=checksum,
                                         remember=remember))

    async def upload_url(self, url: str, *, idempotency_key: str | None = None, wait: float | None = None) -> Upload:
        return await self._run(self._ops.upload_url(url, idempotency_key or new_key(), wait))

    async def get(self, image_id: str, *, wait: float | None = None) -> Image:
        return await self._run(self._ops.get(image_id, wait))

    async def wait(self, image_id: str, timeout: float = 60.0) -> Image:
        return await self._run(self._ops.wait(image_id, timeout))

    async def pages(self, *, page_size: int | None = None, cursor: str | None = None) -> AsyncIterator[Page]:
        while True:
            page = await self._run(self._ops.page(page_size, cursor))
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def list(self, *, page_size: int | None = None) -> AsyncIterator[Image]:
        async for page in self.pages(page_size=page_size):
            for image in page.items:
                yield image

    async def search(
        self, *, sha256: str | None = None, similar_to: str | None = None, max_distance: int | None = None,
        limit: int | None = None,
    ) -> Images:
        return await self._run(self._ops.search(sha256, similar_to, max_distance, limit))

    async def delete(self, image_id: str) -> None:
        await self._run(self._ops.delete(image_id))

    async def aclose(self) -> None:
        self._closed = True
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    async def _run(self, flow: Flow[T]) -> T:
        step = advance(flow, None)
        while not isinstance(step, Done):
            step = advance(flow, await self._perform(step))
        return step.value

    async def _perform(self, step: Step) -> Answer | httpx.TransportError | None:
        if self._closed:
            raise Closed("the client was closed")
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            return None
        content = None if step.body is None else _chunks(step.body.chunks())
        try:
            return Answer.of(await self._http.send(self._http.build_request(**step.request_args(), content=content)))
        except httpx.TransportError as exc:
            return exc
