"""A streaming multipart/form-data parser (RFC 7578) that costs next to nothing per byte.

Werkzeug's parser spent ~2.2 ms per MB of upload in Python, and compiled two regular expressions for every
request (each has its own boundary): together half the web's CPU per upload. Here the body is fed in whatever
pieces arrive (the server's event loop feeds it straight from the socket, see `api.server`), the only work
per byte is one `bytes.find` for the delimiter (C speed) and the write of a file part's bytes to its file, and
Python runs a few lines per piece, not per line of data.

- A part with a filename goes to a file from `new_file` (the blob store's staging area, so that accepting it
  is a rename), closed as soon as the part ends, so that a body holds one descriptor at most (the server budgets
  two a connection); any other part is a form field, kept in memory within `MAX_FIELD_BYTES` in all.
- The body must end with the closing delimiter; the preamble and epilogue are ignored, as the RFC says.
- Everything wrong with the body raises `MalformedBody`, whose message is meant for the client (a 400).
  `Splitter` records it instead, and ignores the rest of the body: the server takes a whole request in before
  the application decides what to answer (a malformed form posted to an unknown route is still a 404).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, BinaryIO

from werkzeug.http import parse_options_header

MAX_BOUNDARY = 200  # RFC 2046 says 70; Werkzeug's own test client sends 72
MAX_PARTS = 16
MAX_HEAD_BYTES = 8 * 1024  # one part's headers
MAX_FIELD_BYTES = 64 * 1024  # all the non-file fields together


class MalformedBody(Exception):
    """The body is not the multipart/form-data its Content-Type announced."""

    code = "malformed_body"


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    path: str | None = None  # a file part's staging file
    file: IO[bytes] | None = None  # that file, open while the part's data arrives
    value: bytearray = field(default_factory=bytearray)  # a field's data
    size: int = 0


class MultipartParser:
    """Feed it the body in pieces, then `finish()`; `parts` holds what it found, in order.

    The states: "preamble" (before the first delimiter), "head" (a part's headers), "start" and "data" (a
    part's content), "after" (just past a delimiter: "--" closes the body, CRLF opens a part), "done" (the
    epilogue)."""

    def __init__(self, boundary: str, new_file: Callable[[], IO[bytes]]) -> None:
        if not boundary or len(boundary) > MAX_BOUNDARY or not boundary.isascii():
            raise MalformedBody(f"the multipart boundary must be 1 to {MAX_BOUNDARY} ASCII characters")
        self.delimiter = b"\r\n--" + boundary.encode("ascii")
        self.new_file = new_file
        self.parts: list[Part] = []
        self.state = "preamble"
        self.pending = b"\r\n"  # the body's first delimiter has no CRLF of its own: act as if it had
        self.field_bytes = 0

    def feed(self, data: bytes | memoryview) -> None:
        buffer = self.pending + data if self.pending else bytes(data)
        self.pending = b""
        position = 0
        while position < len(buffer) and self.state != "done":
            position = getattr(self, f"_{self.state}")(buffer, position)
            if position < 0:  # the rest must wait for more bytes
                return

    def finish(self) -> list[Part]:
        """The parts, once the whole body was fed; raises MalformedBody if it ended early."""
        if self.state != "done":
            raise MalformedBody("the multipart body ended before its closing boundary")
        return self.parts

    def _wait(self, buffer: bytes, position: int) -> int:
        self.pending = buffer[position:]
        return -1

    def _preamble(self, buffer: bytes, position: int) -> int:
        found = buffer.find(self.delimiter, position)
        if found < 0:
            return self._wait(buffer, max(position, len(buffer) - len(self.delimiter) + 1))
        self.state = "after"
        return found + len(self.delimiter)

    def _after(self, buffer: bytes, position: int) -> int:
        if len(buffer) - position < 2:
            return self._wait(buffer, position)
        mark = buffer[position : position + 2]
        if mark == b"--":
            self.state = "done"
            return len(buffer)
        if mark != b"\r\n":
            raise MalformedBody("a multipart delimiter is followed by neither CRLF nor '--'")
        if len(self.parts) == MAX_PARTS:
            raise MalformedBody(f"the multipart body has more than {MAX_PARTS} parts")
        self.state = "head"
        return position + 2

    def _head(self, buffer: bytes, position: int) -> int:
        end = buffer.find(b"\r\n\r\n", position)
        if (end if end >= 0 else len(buffer)) - position > MAX_HEAD_BYTES:
            raise MalformedBody(f"a multipart part's headers are larger than {MAX_HEAD_BYTES} bytes")
        if end < 0:
            return self._wait(buffer, position)
        self.parts.append(self._part(buffer[position:end].decode("utf-8", "replace")))
        self.state = "start"
        return end + 4

    def _start(self, buffer: bytes, position: int) -> int:
        """A part's data begins. Some encoders (Werkzeug's test client) end an empty part with the delimiter
        but without its CRLF: `--boundary` right after the headers ends the part too."""
        bare = self.delimiter[2:]
        head = buffer[position : position + len(bare)]
        if head == bare:
            self._part_ended()
            return position + len(bare)
        if len(head) < len(bare) and bare.startswith(head):
            return self._wait(buffer, position)
        self.state = "data"
        return position

    def _data(self, buffer: bytes, position: int) -> int:
        found = buffer.find(self.delimiter, position)
        if found >= 0:
            self._write(memoryview(buffer)[position:found])
            self._part_ended()
            return found + len(self.delimiter)
        # Hold back only what could be the start of a delimiter cut in two by the end of this piece.
        keep_from = buffer.find(b"\r", max(position, len(buffer) - len(self.delimiter) + 1))
        safe = len(buffer) if keep_from < 0 else keep_from
        self._write(memoryview(buffer)[position:safe])
        return self._wait(buffer, safe) if safe < len(buffer) else len(buffer)

    def _part_ended(self) -> None:
        file = self.parts[-1].file
        if file is not None:
            file.close()
        self.state = "after"

    def _write(self, data: memoryview) -> None:
        part = self.parts[-1]
        part.size += len(data)
        if part.file is not None:
            part.file.write(data)
            return
        self.field_bytes += len(data)
        if self.field_bytes > MAX_FIELD_BYTES:
            raise MalformedBody(f"the form fields are larger than {MAX_FIELD_BYTES} bytes in all")
        part.value += data

    def _part(self, head: str) -> Part:
        headers = {}
        for line in head.split("\r\n"):
            name, colon, value = line.partition(":")
            if not colon:
                raise MalformedBody(f"malformed multipart header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        disposition, options = parse_options_header(headers.get("content-disposition"))
        if disposition != "form-data" or "name" not in options:
            raise MalformedBody("a multipart part lacks 'Content-Disposition: form-data; name=...'")
        filename = options.get("filename")
        part = Part(options["name"], filename, headers.get("content-type"))
        if filename is not None:
            part.file = self.new_file()
            part.path = part.file.name
        return part


@dataclass
class Split:
    """A body split into parts (their files to remove unless committed, even after a fault) and its first fault."""

    parts: list[Part] = field(default_factory=list)
    error: MalformedBody | None = None


class Splitter:
    """A parser that records the body's first fault instead of raising it, then ignores what follows."""

    def __init__(self, boundary: str, new_file: Callable[[], IO[bytes]]) -> None:
        self.split = Split()
        self.parser: MultipartParser | None = None
        try:
            self.parser = MultipartParser(boundary, new_file)
            self.split.parts = self.parser.parts
        except MalformedBody as exc:
            self.split.error = exc

    def feed(self, data: bytes | memoryview) -> None:
        if self.parser is not None and self.split.error is None:
            try:
                self.parser.feed(data)
            except MalformedBody as exc:
                self.split.error = exc

    def finish(self) -> Split:
        if self.parser is not None and self.split.error is None:
            try:
                self.parser.finish()
            except MalformedBody as exc:
                self.split.error = exc
        return self.split


def split_stream(stream: BinaryIO | IO[bytes], boundary: str, new_file: Callable[[], IO[bytes]],
                 chunk: int = 1024 * 1024) -> Split:
    """A whole body read from a stream and split (for servers other than apercu's own, and the test client)."""
    splitter = Splitter(boundary, new_file)
    while data := stream.read(chunk):
        splitter.feed(data)
    return splitter.finish()


def discard(parts: list[Part]) -> None:
    """Remove the files of parts nobody committed (a committed file was renamed away: that is fine)."""
    for part in parts:
        if part.file is not None:
            part.file.close()
        if part.path is not None:
            try:
                os.unlink(part.path)
            except FileNotFoundError:
                pass
