"""Resumable uploads: the tus 1.0.0 protocol at `/uploads/` (core, and the extensions creation,
creation-with-upload, termination, expiration and checksum), translated to `apercu.resumable` and back.

Keys, scopes, tenants, rate limits and backpressure apply as to `POST /images` (the access gate and the rate
limiter count a creation as an upload: `access.UPLOADS`); an upload is its creator's tenant's, and another tenant's
is a 404, as a missing one. Every answer carries `Tus-Resumable`; errors are the API's JSON errors.

A request's body reaches the application whole, spooled to a file by apercu's server (`api.server.bodies`), and
is read from it in pieces: never whole in memory. A connection cut mid-request appends nothing (the server never
hands an incomplete body on); the client asks HEAD where to resume, and sends that request's bytes again.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import IO

from flask import Blueprint, Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from werkzeug.http import http_date

from apercu import resumable
from apercu.api import access, caller, contract, rate_limit, uploads
from apercu.api.errors import CODES, ApiError
from apercu.api.inputs import (
    IDEMPOTENCY_KEY,
    TUS_RESUMABLE,
    TUS_VERSION,
    UPLOAD_CHECKSUM,
    UPLOAD_ID,
    UPLOAD_LENGTH,
    UPLOAD_METADATA,
    UPLOAD_OFFSET,
)
from apercu.api.operation import Given, route
from apercu.resumable import Checksum, MakeImage, Resumable
from apercu.service import Service, Submitted
from apercu.storage.catalog.uploads import UploadRecord
from apercu.storage.partials import open_partials

bp = Blueprint("tus", __name__)
EXTENSION = "apercu.resumable"
EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
ALGORITHMS = ("sha1", "sha256")
OFFSET_TYPE = "application/offset+octet-stream"
NO_UPLOAD = "no upload with this id"


def register(app: Flask) -> None:
    service: Service = app.extensions["apercu"]
    partials = open_partials(service.storage.blobs, service.storage.staging.folder)
    app.extensions[EXTENSION] = Resumable(service, partials)
    app.register_blueprint(bp)


def _resumable() -> Resumable:
    found: Resumable = current_app.extensions[EXTENSION]
    return found


@bp.after_request
def _tus_headers(response: Response) -> Response:
    response.headers["Tus-Resumable"] = TUS_VERSION
    if response.status_code == 412:
        response.headers["Tus-Version"] = TUS_VERSION
    return response


@route(bp, contract.TUS_OPTIONS)
def tus_options(_given: Given) -> ResponseReturnValue:
    settings = _resumable().service.settings
    return Response(status=204, headers={
        "Tus-Version": TUS_VERSION, "Tus-Extension": EXTENSIONS, "Tus-Max-Size": str(settings.max_upload_bytes),
        "Tus-Checksum-Algorithm": ",".join(ALGORITHMS)})


@route(bp, contract.TUS_CREATE, automatic_options=False)
def tus_create(given: Given) -> ResponseReturnValue:
    """A new upload of the caller's tenant, owned by its key (or address) for the cap; with a body, its first
    bytes appended at once."""
    given[TUS_RESUMABLE]
    length, limit = given[UPLOAD_LENGTH], _resumable().service.settings.max_upload_bytes
    if length > limit:
        raise ApiError(413, uploads.too_large_message(limit))
    raw = given.get(UPLOAD_METADATA)
    filename = uploads.clean_filename(_metadata(raw).get("filename"))
    checksum = _checksum(given.get(UPLOAD_CHECKSUM))
    has_body = bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "")
    if has_body and request.mimetype != OFFSET_TYPE:
        raise _not_offset()
    who, gate = caller.current(), access.gate(current_app)
    owner = rate_limit.caller_of(gate, request.path, request.headers.get, request.remote_addr or "")
    with _refusals():
        new = _resumable().new(length, who.tenant, owner, filename, raw, given.get(IDEMPOTENCY_KEY))
        upload = _resumable().create(new)
    if has_body:
        with _refusals(upload.id):
            upload = _append(upload.id, 0, checksum)
    response = _progress(upload, 201)
    response.headers["Location"] = f"/uploads/{upload.id}"
    return response


@route(bp, contract.TUS_HEAD)
def tus_head(given: Given) -> ResponseReturnValue:
    given[TUS_RESUMABLE]
    upload_id = given[UPLOAD_ID]
    with _refusals(upload_id):
        upload = _resumable().status(upload_id, caller.current().tenant_filter, _make_image())
    response = _progress(upload, 200)
    response.headers["Upload-Length"] = str(upload.length)
    if upload.upload_metadata:
        response.headers["Upload-Metadata"] = upload.upload_metadata
    response.headers["Cache-Control"] = "no-store"
    return response


@route(bp, contract.TUS_PATCH)
def tus_patch(given: Given) -> ResponseReturnValue:
    given[TUS_RESUMABLE]
    upload_id = given[UPLOAD_ID]
    if request.mimetype != OFFSET_TYPE:
        raise _not_offset()
    offset, checksum = given[UPLOAD_OFFSET], _checksum(given.get(UPLOAD_CHECKSUM))
    with _refusals(upload_id):
        upload = _append(upload_id, offset, checksum)
    return _progress(upload, 204)


@route(bp, contract.TUS_DELETE)
def tus_delete(given: Given) -> ResponseReturnValue:
    given[TUS_RESUMABLE]
    upload_id = given[UPLOAD_ID]
    with _refusals():
        _resumable().terminate(upload_id, caller.current().tenant_filter)
    return Response(status=204)


def _append(upload_id: str, offset: int, checksum: Checksum | None) -> UploadRecord:
    return _resumable().append(upload_id, offset, request.stream, checksum, caller.current().tenant_filter,
                               _make_image())


def _make_image() -> MakeImage:
    """The image of an upload whose every byte arrived: through the same check and the same `Service.submit` as
    `POST /images`'s (sniffing, idempotency, deduplication, processing)."""
    service = _resumable().service

    def make(whole: IO[bytes], upload: UploadRecord) -> Submitted:
        uploads.checked_stream(whole, service.settings.max_upload_bytes)
        return service.submit(whole, upload.filename, upload.idempotency_key, tenant=upload.tenant)

    return make


@contextmanager
def _refusals(upload_id: str | None = None) -> Iterator[None]:
    """The service's refusals as the API's errors; a refusal of the bytes themselves (no image, too large) ends
    the upload `upload_id` with them, as a direct upload of those bytes would end."""
    try:
        yield
    except resumable.Gone:
        raise ApiError(404, NO_UPLOAD) from None
    except resumable.Expired:
        raise ApiError(410, "the upload expired before it was finished", "upload_expired") from None
    except resumable.Conflict as exc:
        raise ApiError(409, str(exc), "offset_conflict") from None
    except resumable.TooManyOpen as exc:
        raise ApiError(429, str(exc), "too_many_uploads", [("Retry-After", "60")]) from None
    except resumable.ChecksumMismatch as exc:
        raise ApiError(460, str(exc), "checksum_mismatch") from None
    except resumable.TooLong as exc:
        raise ApiError(413, str(exc), CODES[413]) from None
    except ApiError as exc:
        if upload_id is not None and exc.status in (400, 413, 415):
            _resumable().terminate(upload_id, None)
        raise


def _progress(upload: UploadRecord, status: int) -> Response:
    """An answer saying where the upload stands: its offset and expiry, or the image it became."""
    response = Response(status=status)
    response.headers.remove("Content-Type")  # no body, so no type
    response.headers["Upload-Offset"] = str(upload.received)
    if upload.image_id is None:
        response.headers["Upload-Expires"] = http_date(upload.expires_at.replace(tzinfo=UTC))
    else:
        response.headers["Apercu-Image-Id"] = upload.image_id
        response.headers["Link"] = f'</images/{upload.image_id}>; rel="image"'
    return response


def _not_offset() -> ApiError:
    return ApiError(415, f"a resumable upload's bytes are sent as {OFFSET_TYPE}", CODES[415])


def _metadata(raw: str | None) -> dict[str, str]:
    """Upload-Metadata: `key base64value` pairs (a key alone has an empty value), comma-separated, each key once,
    values UTF-8."""
    found: dict[str, str] = {}
    if not raw:
        return found
    for pair in raw.split(","):
        key, _, value = pair.strip().partition(" ")
        if not key or " " in value.strip() or key in found:
            raise UPLOAD_METADATA.refused()
        try:
            found[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise UPLOAD_METADATA.refused() from None
    return found


def _checksum(raw: str | None) -> Checksum | None:
    if raw is None:
        return None
    algorithm, _, encoded = raw.partition(" ")
    try:
        return Checksum(algorithm, base64.b64decode(encoded, validate=True))
    except binascii.Error:
        raise UPLOAD_CHECKSUM.refused() from None
