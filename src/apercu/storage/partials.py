"""The bytes of resumable (tus) uploads while they arrive, where every web process finds them: in the blob store.

- On the local store: one file per upload under `<store root>/partials/`, written at the offset the catalog
  records (whatever lies beyond it, a write that was never recorded, is cut off by the next one).
- On S3: a multipart upload under `uploads/<id>/data`. S3 takes parts of at least 5 MiB (the last one aside), so
  what arrives in smaller pieces waits in a tail object (`uploads/<id>/tail-<offset>`, named by the offset it
  reaches, so that a write the catalog never recorded cannot spoil the tail it did) until it adds up to a part.

A write returns the new `Progress`; the catalog records it (`catalog.uploads.advance`) before `forget` removes the
previous tail. `assembled` is the whole upload as a real file, for the same path as any upload's
(`service.Service.submit`); `discard` removes everything an upload left.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Protocol

from apercu.storage.blobs import BlobStore
from apercu.storage.blobs.local import LocalBlobStore
from apercu.storage.blobs.store import RESUMABLE_PREFIX
from apercu.storage.catalog import utcnow
from apercu.storage.catalog.uploads import Progress, UploadRecord, Uploads

S3_MIN_PART = 5 * 1024 * 1024  # S3's smallest part but the last
COPY = 1024 * 1024
SWEEP_BATCH = 500


class Partials(Protocol):
    def write(self, upload: UploadRecord, body: IO[bytes], size: int) -> Progress:
        """Append `size` bytes of `body` at `upload.received`; the last byte of the upload assembles it."""

    def forget(self, before: UploadRecord, after: UploadRecord) -> None:
        """What `before` needed and `after` (recorded since) does not."""

    def assembled(self, upload: UploadRecord) -> IO[bytes]:
        """The whole upload (every byte received), as a real file the caller closes."""

    def discard(self, upload: UploadRecord) -> None:
        """Remove every byte of the upload; what is gone already is fine."""


class LocalPartials:
    def __init__(self, root: Path) -> None:
        self.folder = root / "partials"
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, upload: UploadRecord) -> Path:
        return self.folder / upload.id

    def write(self, upload: UploadRecord, body: IO[bytes], size: int) -> Progress:
        path = self._path(upload)
        with open(path, "r+b" if path.exists() else "wb") as out:
            out.truncate(upload.received)
            out.seek(upload.received)
            copied = _copy(body, out, size)
            out.flush()
            os.fsync(out.fileno())
        return Progress(flushed=upload.received + copied)

    def forget(self, before: UploadRecord, after: UploadRecord) -> None:
        return None

    def assembled(self, upload: UploadRecord) -> IO[bytes]:
        return open(self._path(upload), "rb")

    def discard(self, upload: UploadRecord) -> None:
        self._path(upload).unlink(missing_ok=True)


class S3Partials:
    """On `store`'s bucket and client (an `S3BlobStore`), with `staging` for the pieces put together."""

    def __init__(self, store: Any, staging: Path) -> None:
        self.store, self.client, self.bucket = store, store.client, store.bucket
        self.staging = staging

    def _object(self, key: str) -> str:
        return f"{self.store.root}{key}"

    def write(self, upload: UploadRecord, body: IO[bytes], size: int) -> Progress:
        """The tail so far and the new bytes, put together in a staging file: a part once 5 MiB or the last bytes,
        else the new tail. A single request bringing every byte at once is one plain PUT."""
        done = upload.progress
        final = upload.received + size == upload.length
        with tempfile.TemporaryFile(dir=self.staging) as joined:
            if upload.received > done.flushed:
                with self.store.open(tail(upload.id, upload.received)) as old:
                    shutil.copyfileobj(old, joined, COPY)
            _copy(body, joined, size)
            pending = joined.tell()
            joined.seek(0)
            if final and done.handle is None:
                self.store.put(data(upload.id), joined)
                return Progress(flushed=upload.length)
            if pending < S3_MIN_PART and not final:
                self.store.put(tail(upload.id, upload.received + size), joined)
                return done
            return self._part(upload, joined, final)

    def _part(self, upload: UploadRecord, joined: IO[bytes], final: bool) -> Progress:
        done, key = upload.progress, self._object(data(upload.id))
        handle = done.handle or self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        number = len(done.parts) + 1  # a part written again after a failure replaces the one of the same number
        etag = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=handle, PartNumber=number,
                                       Body=joined)["ETag"]
        parts = (*done.parts, (number, str(etag)))
        flushed = done.flushed + joined.seek(0, os.SEEK_END)
        if final:
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=handle, MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]})
            return Progress(flushed=upload.length)
        return Progress(handle, parts, flushed)

    def forget(self, before: UploadRecord, after: UploadRecord) -> None:
        if before.received > before.progress.flushed and before.received != after.received:
            self.store.delete(tail(before.id, before.received))

    def assembled(self, upload: UploadRecord) -> IO[bytes]:
        stream: IO[bytes] = self.store.open(data(upload.id))
        with stream:
            copy = tempfile.NamedTemporaryFile(dir=self.staging, prefix="upload-")  # noqa: SIM115 - the caller's
            shutil.copyfileobj(stream, copy, COPY)
        copy.seek(0)
        return copy

    def discard(self, upload: UploadRecord) -> None:
        handle = upload.progress.handle
        if handle is not None:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._object(data(upload.id)),
                                                   UploadId=handle)
            except self.client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                    raise
        for key in list(self.store.keys(f"{RESUMABLE_PREFIX}{upload.id}/")):
            self.store.delete(key)


def data(upload_id: str) -> str:
    return f"{RESUMABLE_PREFIX}{upload_id}/data"


def tail(upload_id: str, reaching: int) -> str:
    return f"{RESUMABLE_PREFIX}{upload_id}/tail-{reaching}"


def _copy(body: IO[bytes], out: IO[bytes], size: int) -> int:
    """Copy `size` bytes (fewer if the body ends first) in pieces; how many were copied."""
    copied = 0
    while copied < size and (piece := body.read(min(COPY, size - copied))):
        out.write(piece)
        copied += len(piece)
    return copied


def open_partials(blobs: BlobStore, staging: Path) -> Partials:
    """Next to the store's own bytes: its folder, or its bucket."""
    if isinstance(blobs, LocalBlobStore):
        return LocalPartials(blobs.root)
    return S3Partials(blobs, staging)



def sweep_expired(uploads: Uploads, partials: Partials) -> int:
    """Remove the resumable uploads past their expiry (APERCU_UPLOAD_EXPIRY) with their bytes: the bytes first, so
    that a failure leaves the row for the next sweep to try again; returns how many went. An unfinished upload's
    requests are refused from its expiry on (`apercu.resumable`), so nothing writes to it meanwhile."""
    removed = 0
    while batch := uploads.expired(utcnow(), SWEEP_BATCH):
        for upload in batch:
            partials.discard(upload)
            uploads.remove(upload.id)
            removed += 1
    return removed
