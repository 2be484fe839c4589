"""An upload's body: one `multipart/form-data` part `file` (after any text fields), streamed from its source a
chunk at a time with a Content-Length, never read whole (a path, or a seekable file object; bytes are sent as they
are). Each attempt opens the source anew and sends it from the start, so a retried upload sends the same bytes."""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from apercu_client.errors import SourceError

CHUNK = 256 * 1024  # bytes read from the source and sent at a time
DEFAULT_NAME = "upload"  # the part's filename when the source has no name (bytes, an unnamed stream)

Source = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO | IO[bytes]
Progress = Callable[[int, int], None]  # (bytes of the file sent in this attempt, the file's size)


class Body(Protocol):
    """A request's body that can be sent again: its headers (its type and length), then its bytes, read anew at
    each attempt."""

    @property
    def headers(self) -> dict[str, str]: ...

    def chunks(self) -> Iterator[bytes]: ...


def quote_filename(name: str) -> str:
    """The filename parameter as browsers, curl and urllib3 send it (WHATWG HTML: UTF-8, with CR, LF and `"`
    percent-encoded), which the service's parser reads back."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text.translate({10: "%0A", 13: "%0D", 34: "%22"})


def envelope(filename: str, boundary: str, fields: Mapping[str, str] | None = None) -> tuple[bytes, bytes]:
    """What goes before and after the file's bytes (text `fields` first, then the part `file`). Kept apart from the
    file so that the body's length is known without reading it."""
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in (fields or {}).items()
    ) + (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{quote_filename(filename)}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return head.encode("utf-8"), f"\r\n--{boundary}--\r\n".encode("ascii")


def stream_body(
    fp: IO[bytes], size: int, head: bytes, tail: bytes, sent: Callable[[int], None] = lambda n: None
) -> Generator[bytes, None, None]:
    """The body in pieces of at most CHUNK bytes: exactly `size` bytes of the file between head and tail, as the
    Content-Length promised. `sent` counts the file's bytes once each piece has gone."""
    yield head
    left = size
    while left:
        try:
            chunk = fp.read(min(CHUNK, left))
        except OSError as exc:
            raise SourceError(f"cannot read: {exc.strerror or exc}") from exc
        if not chunk:
            raise SourceError("the file became shorter while it was being sent")
        yield chunk
        sent(len(chunk))
        left -= len(chunk)
    yield tail


@dataclass
class Multipart:
    """One upload's body, to be sent as often as the retries need: `opener` gives the source at its start."""

    opener: Callable[[], AbstractContextManager[IO[bytes]]]
    size: int
    filename: str
    fields: dict[str, str] = field(default_factory=dict)
    progress: Progress | None = None
    boundary: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self._head, self._tail = envelope(self.filename, self.boundary, self.fields)

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": f"multipart/form-data; boundary={self.boundary}",
                "Content-Length": str(len(self._head) + self.size + len(self._tail))}

    def chunks(self) -> Iterator[bytes]:
        """One attempt's body, the progress told from 0 again (a retry sends the file again)."""
        done = 0

        def sent(n: int) -> None:
            nonlocal done
            done += n
            if self.progress is not None:
                self.progress(done, self.size)

        if self.progress is not None:
            self.progress(0, self.size)
        try:
            opened = self.opener()
        except OSError as exc:
            raise SourceError(f"cannot read: {exc.strerror or exc}") from exc
        with opened as fp:
            yield from stream_body(fp, self.size, self._head, self._tail, sent)


def multipart(
    source: Source, filename: str | None, fields: dict[str, str], progress: Progress | None
) -> Multipart:
    """The body for a path, bytes, or a binary file object (read from where it stands now; a stream that cannot
    seek is read into memory first, so that a retry can send it again)."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise SourceError(f"cannot read: {exc.strerror or exc}") from exc
        return Multipart(lambda: path.open("rb"), size, filename or path.name, fields, progress)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return Multipart(lambda: io.BytesIO(data), len(data), filename or DEFAULT_NAME, fields, progress)
    fp = source
    named = getattr(fp, "name", None)  # a file's path; not a descriptor's number (a pipe's), nor a name-less stream
    name = filename or (os.path.basename(named) if isinstance(named, str) else "") or DEFAULT_NAME
    if not fp.seekable():
        return multipart(fp.read(), name, fields, progress)
    start = fp.tell()
    size = fp.seek(0, io.SEEK_END) - start

    def rewound() -> AbstractContextManager[IO[bytes]]:
        fp.seek(start)
        return contextlib.nullcontext(fp)  # the caller's file: left open

    return Multipart(rewound, size, name, fields, progress)
