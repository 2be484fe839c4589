"""Where a request's body goes while the event loop receives it, before a thread runs the application.

A multipart form (an upload) is split into its parts on arrival (`SplitBody`, `api.multipart`), each file part
written once, straight to the staging file it is accepted from; anything else is spooled whole (`SpooledBody`),
in memory up to SPOOL_IN_MEMORY bytes and beyond that in an unnamed file on the data volume. Either way an upload
is never whole in memory, and the application then reads the body as its `wsgi.input`.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from typing import IO, Protocol

from werkzeug.http import parse_options_header

from apercu.api import multipart

SPOOL_IN_MEMORY = 16 * 1024  # body bytes kept in memory; beyond, the body goes to a file


class Body(Protocol):
    def write(self, piece: memoryview) -> None: ...

    def stream(self) -> IO[bytes]:
        """The whole body, for the application to read."""

    def discard(self) -> None:
        """Remove what is left of it once the request is answered."""


class SpooledBody:
    """A body received as it is: in memory, then in an unnamed file on the data volume."""

    def __init__(self, folder: str) -> None:
        self.file = tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY, dir=folder)

    def write(self, piece: memoryview) -> None:
        self.file.write(piece)

    def stream(self) -> IO[bytes]:
        self.file.seek(0)
        return self.file

    def discard(self) -> None:
        self.file.close()


class SplitBody:
    """A multipart/form-data body split into its parts as it arrives: an upload's bytes are written once, instead
    of being spooled, read back, parsed and written again by the application. A malformed body is the
    application's to answer."""

    def __init__(self, boundary: str, new_file: Callable[[], IO[bytes]]) -> None:
        self.splitter = multipart.Splitter(boundary, new_file)

    def write(self, piece: memoryview) -> None:
        self.splitter.feed(piece)

    def stream(self) -> IO[bytes]:
        return ReceivedParts(self.splitter.finish())

    def discard(self) -> None:
        """Remove what the application did not commit (a committed file was renamed away)."""
        multipart.discard(self.splitter.split.parts)


class ReceivedParts(io.BytesIO):
    """The WSGI input of a split body: empty, with the split attached for `api.uploads.UploadRequest`."""

    def __init__(self, split: multipart.Split) -> None:
        super().__init__(b"")
        self.split = split


def body_for(content_type: str | None, spool_dir: str, new_upload_file: Callable[[], IO[bytes]]) -> Body:
    """Where a body of this Content-Type goes: a multipart form is split, anything else spooled."""
    mimetype, options = parse_options_header(content_type)
    if mimetype == "multipart/form-data":
        return SplitBody(options.get("boundary", ""), new_upload_file)
    return SpooledBody(spool_dir)
