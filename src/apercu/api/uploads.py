"""Receiving an upload: streamed to disk, measured, recognised from its content, then committed.

The multipart body is never held in memory: `api.multipart` writes the file part straight into the staging
folder (with the default store, on the same file system as its final place, so storing it is a hard link).
The declared length is checked before a byte of the body is read, and the real size again after.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO, BinaryIO, cast

from flask import Flask, Request, current_app
from werkzeug.datastructures import FileStorage, MultiDict

from apercu.api import multipart
from apercu.api.errors import ApiError
from apercu.api.inputs import FILE
from apercu.imaging.formats import sniff

# Room for the multipart boundaries and part headers around the file itself.
MULTIPART_SLACK = 64 * 1024
MAX_FILENAME = 255


class UploadRequest(Request):
    """A request whose multipart body is split by `api.multipart`: file parts go straight to the staging folder,
    and are removed when the request ends (what was accepted is in the blob store by then).

    Under apercu's own server the body was already split as it arrived (`api.server`), and the parts come with
    the WSGI input; under any other server (or Flask's test client) the input stream is split here."""

    def _load_form_data(self) -> None:
        if "form" in self.__dict__ or self.mimetype != "multipart/form-data":
            super()._load_form_data()
            return
        split = self._split()
        if split.error is not None:  # raised again on every access: a malformed body has no parts to offer
            raise ApiError(400, str(split.error), code=split.error.code)
        form: MultiDict[str, str] = MultiDict()
        files: MultiDict[str, FileStorage] = MultiDict()
        for part in split.parts:
            if part.path is None:
                form.add(part.name, part.value.decode("utf-8", "replace"))
            else:
                stream = open(part.path, "r+b")  # noqa: SIM115 - closed with the request (Request.close)
                files.add(part.name, FileStorage(stream, part.filename, part.name, part.content_type))
        self.__dict__.update(form=form, files=files)

    def _split(self) -> multipart.Split:
        """The body split once: by the server as it arrived, or here from the input stream."""
        received = self._received()
        if received is not None:
            return received
        if "_split" not in self.__dict__:
            boundary = self.mimetype_params.get("boundary", "")
            self.__dict__["_split"] = multipart.split_stream(self.stream, boundary, staging(current_app))
        split: multipart.Split = self.__dict__["_split"]
        return split

    def _received(self) -> multipart.Split | None:
        return cast("multipart.Split | None", getattr(self.environ.get("wsgi.input"), "split", None))

    def close(self) -> None:
        super().close()
        split = self._received() or self.__dict__.get("_split")
        if split is not None:
            multipart.discard(split.parts)


def staging(app: Flask) -> Callable[[], IO[bytes]]:
    """Where uploaded files are written while they arrive: this machine's staging folder."""
    incoming: Callable[[], IO[bytes]] = app.extensions["apercu"].storage.staging.incoming
    return incoming


def check_declared_length(request: Request, max_bytes: int) -> None:
    """Refuse from the Content-Length header alone, before the body is read."""
    if request.content_length is not None and request.content_length > max_bytes + MULTIPART_SLACK:
        raise ApiError(413, too_large_message(max_bytes))


def too_large_message(max_bytes: int) -> str:
    return f"the file is larger than the maximum upload size of {max_bytes} bytes"


def checked_file(request: Request, max_bytes: int) -> tuple[IO[bytes], str | None]:
    """The `file` part, checked to be a non-empty image of a supported format within the size limit, and the
    client's name for it (cleaned); raises ApiError for what the client got wrong."""
    check_declared_length(request, max_bytes)
    upload = request.files.get(FILE.name)
    if upload is None:
        raise FILE.refused()
    checked_stream(upload.stream, max_bytes)
    return upload.stream, clean_filename(upload.filename)


def checked_stream(stream: IO[bytes], max_bytes: int) -> None:
    """The one check of an upload's bytes, whichever way they came (a form's file part, a resumable upload's
    assembled file): not empty, within the size limit, an image of a supported format; ApiError otherwise."""
    size = stream.seek(0, os.SEEK_END)
    if size == 0:
        raise FILE.empty()
    if size > max_bytes:
        raise ApiError(413, too_large_message(max_bytes))
    if sniff(cast(BinaryIO, stream)) is None:
        raise ApiError(
            415,
            "not an image in a supported format (JPEG, PNG, TIFF, BMP, TGA, GIF, WebP, HEIC/HEIF, AVIF)",
            code="unsupported_format",
        )


def clean_filename(name: str | None) -> str | None:
    """The client's name, for display only: control characters removed and length bounded."""
    if not name:
        return None
    cleaned = "".join(ch for ch in name if ch.isprintable())
    return cleaned[:MAX_FILENAME] or None
