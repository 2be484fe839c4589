"""Resumable uploads (tus 1.0.0 at the service's `/uploads/`) as one flow that both clients drive, as every other
operation (`_core`): create the upload (Upload-Length, Upload-Metadata `filename`, the idempotency key), PATCH the
file a chunk at a time from the offset the service has, and, when a chunk does not get through (a cut connection,
a 409, a checksum refused), ask HEAD where the upload stands and carry on from there. The service appends a
request's bytes only once it has them all, so a cut chunk is sent again whole, never more.

The upload's URL is kept in a `ResumeStore` under the file's fingerprint until the image exists, so that another
run (after the process was killed) continues the same upload. The request that brings the last byte is answered
with `Apercu-Image-Id`: the result is that image, as `upload` returns it."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from apercu_client._core import (
    NOT_RETRIED,
    RETRY_STATUSES,
    Answer,
    Call,
    ClientBase,
    Flow,
    Operations,
    Pause,
    describe,
    exchange,
    new_key,
)
from apercu_client.bodies import Progress, stream_body
from apercu_client.errors import ApiError, SourceError, Unreachable
from apercu_client.models import Upload
from apercu_client.resume import ResumeStore, fingerprint

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_TYPE = "application/offset+octet-stream"
CHUNK_SIZE = 8 * 1024 * 1024  # bytes per PATCH: what a cut connection costs again at most
RETRIED = frozenset({409, 460, *RETRY_STATUSES})  # answers after which HEAD says where to go on from
GONE = frozenset({404, 410})  # a stored upload the service no longer has: start again


@dataclass(frozen=True)
class TusFile:
    """The file to send and what is known of it before the first request (read here, not in the flow)."""

    path: Path
    size: int
    filename: str
    key: str  # its fingerprint in the resume store
    idempotency_key: str

    def metadata(self) -> str:
        encoded = base64.b64encode(self.filename.encode("utf-8", "surrogateescape")).decode("ascii")
        return f"filename {encoded}"


@dataclass(frozen=True)
class Piece:
    """One PATCH's body: `length` bytes of the file from `offset`, read when sent (and, with `checksum`, once more
    before, for its sha256). `progress` is told the bytes of the whole file the service will have."""

    file: TusFile
    offset: int
    length: int
    checksum: bool
    progress: Progress | None

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": OFFSET_TYPE, "Content-Length": str(self.length)}
        if self.checksum:
            digest = hashlib.sha256()
            for chunk in self._read(None):
                digest.update(chunk)
            headers["Upload-Checksum"] = "sha256 " + base64.b64encode(digest.digest()).decode("ascii")
        return headers

    def chunks(self) -> Iterator[bytes]:
        return self._read(self.progress)

    def _read(self, progress: Progress | None) -> Iterator[bytes]:
        done = self.offset

        def sent(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, self.file.size)

        if progress is not None:
            progress(done, self.file.size)
        try:
            opened = self.file.path.open("rb")
        except OSError as exc:
            raise SourceError(f"cannot read: {exc.strerror or exc}") from exc
        with opened as fp:
            fp.seek(self.offset)
            yield from (chunk for chunk in stream_body(fp, self.length, b"", b"", sent) if chunk)


def prepare(
    client: ClientBase, path: str | os.PathLike[str], filename: str | None, idempotency_key: str | None
) -> TusFile:
    source = Path(path)
    try:
        stat = source.stat()
        key = fingerprint(client.base_url, source, stat)
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}") from exc
    return TusFile(source, stat.st_size, filename or source.name, key, idempotency_key or new_key())


def flow(
    client: ClientBase, path: str | os.PathLike[str], *, filename: str | None, idempotency_key: str | None,
    wait: float | None, progress: Progress | None, chunk_size: int, checksum: bool, remember: bool,
) -> Flow[Upload]:
    """`Client.upload_resumable`'s flow (the file is looked at now: a missing one fails here)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    sender = Sender(client._ops, prepare(client, path, filename, idempotency_key),
                    client.resume_store if remember else None, chunk_size, checksum, progress)
    return sender.run(wait)


class Sender:
    """One file's resumable upload: where it stands (`location`, `offset`), and the steps to finish it."""

    def __init__(
        self, ops: Operations, file: TusFile, store: ResumeStore | None, chunk_size: int, checksum: bool,
        progress: Progress | None,
    ) -> None:
        self.ops, self.file, self.store = ops, file, store
        self.chunk_size, self.checksum, self.progress = chunk_size, checksum, progress
        self.location: str | None = None
        self.offset = 0
        self.image_id: str | None = None
        self.resumed_from: int | None = None  # the offset the service gave at the last HEAD

    def run(self, wait: float | None) -> Flow[Upload]:
        stored = self.store.get(self.file.key) if self.store else None
        if stored is not None:
            yield from self.where(stored)
        if self.location is None:
            yield from self.create()
        while self.image_id is None:
            yield from self.send_next()
        if self.store:
            self.store.forget(self.file.key)
        image = yield from (self.ops.get(self.image_id) if wait is None else self.ops.wait(self.image_id, wait))
        return Upload(image.id, image.status, image.links, image=None if wait is None else image,
                      resumed_from=self.resumed_from)

    def create(self) -> Flow[None]:
        headers = TUS | {"Upload-Length": str(self.file.size), "Upload-Metadata": self.file.metadata(),
                         "Idempotency-Key": self.file.idempotency_key}
        answer = yield from exchange(Call("POST", "/uploads/", headers=headers), self.ops.retries)
        answer.ok()
        location = answer.headers.get("location")
        if not location:
            raise ApiError(answer.status, "unexpected_answer", "the service made an upload but gave no Location")
        self.location, self.offset = location, 0
        if self.store:
            self.store.put(self.file.key, location)

    def where(self, location: str) -> Flow[None]:
        """HEAD: the upload's offset (or its image); one the service no longer has is forgotten (`location` None)."""
        answer = yield from exchange(Call("HEAD", location, headers=TUS), self.ops.retries)
        if answer.status in GONE:
            if self.store:
                self.store.forget(self.file.key)
            self.location = None
            return
        answer.ok()
        self.location = location
        self.read_progress(answer)
        self.resumed_from = self.offset

    def send_next(self) -> Flow[None]:
        """PATCH the next chunk; when it fails in a way worth retrying, wait as `Retries` says, then HEAD."""
        failures = 0
        while True:
            assert self.location is not None
            piece = Piece(self.file, self.offset, min(self.chunk_size, self.file.size - self.offset), self.checksum,
                          self.progress)
            headers = TUS | {"Upload-Offset": str(self.offset)}
            try:
                answer = yield Call("PATCH", self.location, headers=headers, body=piece)
            except httpx.TransportError as exc:
                failures += 1
                if failures > self.ops.retries.connect or isinstance(exc, NOT_RETRIED):
                    raise Unreachable(describe(exc)) from exc
                delay = self.ops.retries.backoff(failures)
            else:
                assert answer is not None
                if 200 <= answer.status < 300:
                    self.read_progress(answer)
                    return
                failures += 1
                if answer.status not in RETRIED or failures > self.ops.retries.busy:
                    raise self.given_up(answer)
                delay = answer.retry_after(self.ops.retries.max_delay) or self.ops.retries.backoff(failures)
            yield Pause(delay)
            yield from self.where(self.location)
            if self.location is None:
                raise ApiError(404, "not_found", "the upload is no longer on the service")
            if self.image_id is not None:
                return

    def given_up(self, answer: Answer) -> ApiError:
        """A refusal that ends the upload (its bytes are no image, too large, gone): not resumed by a later run."""
        if self.store and answer.status < 500:
            self.store.forget(self.file.key)
        return answer.error()

    def read_progress(self, answer: Answer) -> None:
        try:
            self.offset = int(answer.headers["upload-offset"])
        except (KeyError, ValueError):
            raise ApiError(answer.status, "unexpected_answer", "no Upload-Offset in a tus answer") from None
        self.image_id = answer.headers.get("apercu-image-id")
        if self.image_id is None and self.offset >= self.file.size:
            raise ApiError(answer.status, "unexpected_answer", "every byte was sent, but no image came of them")
