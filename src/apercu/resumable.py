"""Resumable uploads (tus 1.0): the rules, between the tus routes (`api.tus`) and storage.

An upload is created with its length (`create`: refused beyond the owner's open uploads), then appended to in any
number of requests, each at the offset the catalog records (`append`), whichever web process answers it: its
state is in the catalog (`catalog.uploads`), its bytes in the blob store (`storage.partials`). One request writes
at a time (a claim in the catalog; another gets `Busy`). A request's bytes are received and checked whole (their
length, their checksum) in a staging file before any of them is appended, so a refused request appends nothing.

The request that brings the last byte makes the image, by the caller's `make_image` (the route passes the same
path as `POST /images`: sniffing, idempotency, deduplication, storing, queueing); the upload then answers with its
image's id until it expires. An upload not finished by its expiry (`APERCU_UPLOAD_EXPIRY`) is removed with its
bytes by the worker's sweep (`storage.partials.sweep_expired`, from `tasks.housekeeping`).
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import IO

from apercu import metrics
from apercu.service import Service, Submitted
from apercu.storage.catalog import utcnow
from apercu.storage.catalog.uploads import Claimed, NewUpload, UploadRecord
from apercu.storage.partials import COPY, Partials

CLAIM_SECONDS = 120  # how long a request may hold an upload (writing its bytes out): a dead process's claim frees
MakeImage = Callable[[IO[bytes], UploadRecord], Submitted]


class Gone(Exception):
    """No such upload for this tenant (never was, terminated, or swept)."""


class Expired(Exception):
    """The upload's time ended before it was finished (the sweep removes it)."""


class Conflict(Exception):
    """The request's offset is not the upload's, or another request is writing to it; the message says which."""


class TooManyOpen(Exception):
    """The owner holds `APERCU_MAX_OPEN_UPLOADS` unfinished uploads already."""


class ChecksumMismatch(Exception):
    """The request's bytes do not have the checksum it declared: nothing was appended."""


class TooLong(Exception):
    """The request brings more bytes than the upload's length leaves room for: nothing was appended."""


@dataclass(frozen=True)
class Checksum:
    algorithm: str  # hashlib's name: sha1, sha256
    digest: bytes


@dataclass(frozen=True)
class Resumable:
    service: Service
    partials: Partials

    def create(self, new: NewUpload) -> UploadRecord:
        found = self.service.storage.catalog.uploads.create(new, self.service.settings.max_open_uploads)
        if found is None:
            raise TooManyOpen(f"this caller holds {self.service.settings.max_open_uploads} unfinished uploads "
                              "already (APERCU_MAX_OPEN_UPLOADS): finish or terminate one first")
        return found

    def new(self, length: int, tenant: str, owner: str, filename: str | None, metadata: str | None,
            idempotency_key: str | None) -> NewUpload:
        expires = utcnow() + timedelta(seconds=self.service.settings.upload_expiry)
        return NewUpload(uuid.uuid4().hex, tenant, owner, length, filename, metadata, idempotency_key, expires)

    def status(self, upload_id: str, tenant: str | None, make_image: MakeImage) -> UploadRecord:
        """The upload as it stands; one whose every byte arrived without an image yet (its last request failed
        after the bytes were stored) makes it now."""
        upload = self._open(upload_id, tenant)
        if upload.image_id is None and upload.received == upload.length:
            try:
                return self._conclude_claimed(upload, make_image)
            except Conflict:
                return upload  # its last request is making the image right now
        return upload

    def _open(self, upload_id: str, tenant: str | None) -> UploadRecord:
        upload = self.service.storage.catalog.uploads.get(upload_id, tenant)
        if upload is None:
            raise Gone(upload_id)
        if upload.image_id is None and upload.expires_at <= utcnow():
            raise Expired(upload_id)
        return upload

    def append(self, upload_id: str, offset: int, body: IO[bytes], checksum: Checksum | None, tenant: str | None,
               make_image: MakeImage) -> UploadRecord:
        """Append a request's bytes at `offset`; the upload as it stands after."""
        upload = self._open(upload_id, tenant)
        if upload.image_id is None and upload.received == upload.length == offset:  # (its image failed to be made)
            return self._conclude_claimed(upload, make_image)
        if upload.image_id is not None or offset != upload.received:
            raise Conflict(f"the upload is at offset {upload.received}, not {offset}: ask HEAD where to resume")
        with tempfile.TemporaryFile(dir=self.service.storage.staging.folder) as staged:
            size = _receive(body, staged, upload.length - offset, checksum)
            staged.seek(0)
            token = self._claim(upload_id, offset)
            try:
                upload = self._write(upload, token, staged, size)
            except BaseException:
                self.service.storage.catalog.uploads.release(upload_id, token)
                raise
        if offset > 0:
            metrics.RESUMED.inc()
        if upload.received == upload.length:
            return self._conclude(upload, token, make_image)
        self.service.storage.catalog.uploads.release(upload_id, token)
        return upload

    def _claim(self, upload_id: str, offset: int) -> str:
        token = secrets.token_hex(16)
        until = utcnow() + timedelta(seconds=CLAIM_SECONDS)
        claimed = self.service.storage.catalog.uploads.claim(upload_id, offset, token, until)
        if claimed is Claimed.GONE:
            raise Gone(upload_id)
        if claimed is not Claimed.YES:
            raise Conflict(f"{claimed.value}: ask HEAD where to resume")
        return token

    def _write(self, upload: UploadRecord, token: str, staged: IO[bytes], size: int) -> UploadRecord:
        """The bytes written out, then recorded under the claim; the previous tail forgotten once recorded."""
        uploads = self.service.storage.catalog.uploads
        progress = self.partials.write(upload, staged, size)
        if not uploads.advance(upload.id, token, upload.received + size, progress):
            raise Conflict("another request took the upload over while this one wrote: ask HEAD where to resume")
        after = UploadRecord(**{**upload.__dict__, "received": upload.received + size, "progress": progress})
        self.partials.forget(upload, after)
        return after

    def _conclude_claimed(self, upload: UploadRecord, make_image: MakeImage) -> UploadRecord:
        return self._conclude(upload, self._claim(upload.id, upload.received), make_image)

    def _conclude(self, upload: UploadRecord, token: str, make_image: MakeImage) -> UploadRecord:
        """Every byte is here: the image is made from them (a refusal, such as bytes that are no image, ends the
        upload with its bytes); the bytes go once the image holds its own copy."""
        uploads = self.service.storage.catalog.uploads
        try:
            with self.partials.assembled(upload) as whole:
                submitted = make_image(whole, upload)
        except BaseException:
            uploads.release(upload.id, token)
            raise
        uploads.finish(upload.id, token, submitted.image.id)
        self.partials.discard(upload)
        return UploadRecord(**{**upload.__dict__, "image_id": submitted.image.id})

    def terminate(self, upload_id: str, tenant: str | None) -> None:
        """Remove the upload and its bytes (the row first: a request arriving meanwhile finds nothing)."""
        upload = self.service.storage.catalog.uploads.get(upload_id, tenant)
        if upload is None:
            raise Gone(upload_id)
        self.service.storage.catalog.uploads.remove(upload_id)
        self.partials.discard(upload)


def _receive(body: IO[bytes], staged: IO[bytes], room: int, checksum: Checksum | None) -> int:
    """Copy the request's bytes to `staged`, checking that they fit in `room` and match `checksum`; their size."""
    digest = hashlib.new(checksum.algorithm) if checksum else None
    size = 0
    while piece := body.read(COPY):
        size += len(piece)
        if size > room:
            raise TooLong(f"the request brings more bytes than the {room} the upload's length leaves")
        staged.write(piece)
        if digest is not None:
            digest.update(piece)
    if checksum is not None and digest is not None and digest.digest() != checksum.digest:
        raise ChecksumMismatch(f"the bytes' {checksum.algorithm} is not the Upload-Checksum sent: nothing appended")
    return size
