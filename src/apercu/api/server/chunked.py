"""A chunked request body (RFC 9112 section 7.1) decoded as it arrives: bytes in, data pieces and the end out.

Pure: no socket, no file, no clock. The server's event loop feeds it whatever one read brought, split anywhere
(inside a size line, an extension, the CRLF after the data, the trailer), and must never wait for more: the
decoder keeps the partial line and carries on with the next feed. Chunk extensions are checked and ignored and
the trailer is read and dropped, as gunicorn's own reader does; a line longer than LINE_LIMIT, a trailer longer
than TRAILER_LIMIT, a size that is not hexadecimal or a bare LF is refused with the API's error (400, or 431 for
the trailer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gunicorn.http.body import CHUNK_EXT_RE

from apercu.api.errors import ApiError

LINE_LIMIT = 8190  # a chunk-size line, as gunicorn allows
TRAILER_LIMIT = 32 * 1024
HEX = frozenset(b"0123456789abcdefABCDEF")


@dataclass
class Decoded:
    """What one feed gave: the data in it (views of the bytes fed, in order) and, once the body has ended, the
    bytes that followed it (the client's next request), else None."""

    pieces: list[memoryview] = field(default_factory=list)
    rest: bytes | None = None


class Dechunker:
    """The decoder's state between feeds: size -> data -> crlf -> size ... -> trailer (after the empty chunk)."""

    def __init__(self) -> None:
        self.state = "size"
        self.line = bytearray()  # the line being received in the size, crlf and trailer states
        self.remaining = 0  # data bytes left in the current chunk
        self.trailer_bytes = 0

    def feed(self, data: bytes) -> Decoded:
        """Decode `data` (see Decoded); raises ApiError for a malformed or oversized framing."""
        decoded, view, pos = Decoded(), memoryview(data), 0
        while pos < len(data):
            if self.state == "data":
                size = min(self.remaining, len(data) - pos)
                decoded.pieces.append(view[pos : pos + size])
                pos += size
                self.remaining -= size
                if not self.remaining:
                    self.state = "crlf"
                continue
            end = data.find(b"\n", pos)
            stop = len(data) if end < 0 else end + 1
            self.line += view[pos:stop]
            pos = stop
            if len(self.line) > LINE_LIMIT:
                raise ApiError(431 if self.state == "trailer" else 400, "a chunked-body line is too long")
            if end >= 0:
                if self._line_done(bytes(self.line)):
                    decoded.rest = data[pos:]
                    return decoded
                self.line.clear()
        return decoded

    def _line_done(self, line: bytes) -> bool:
        """Act on one complete line; True when it ended the body."""
        if not line.endswith(b"\r\n"):
            raise ApiError(400, "a chunked-body line ends with a bare LF")
        line = line[:-2]
        if self.state == "crlf":
            if line:
                raise ApiError(400, "chunk data is longer than its size")
            self.state = "size"
            return False
        if self.state == "trailer":
            self.trailer_bytes += len(line) + 2
            if self.trailer_bytes > TRAILER_LIMIT:
                raise ApiError(431, "the chunked-body trailer is too large")
            return not line
        self.remaining = chunk_size(line)
        self.state = "data" if self.remaining else "trailer"
        return False


def chunk_size(line: bytes) -> int:
    """The size of a chunk-size line (without its CRLF), extensions checked and ignored."""
    digits, semicolon, extensions = line.partition(b";")
    if semicolon:
        digits = digits.rstrip(b" \t")
        if b"\r" in extensions or not CHUNK_EXT_RE.fullmatch(b";" + extensions):
            raise ApiError(400, "invalid chunk extension")
    if not digits or any(c not in HEX for c in digits):
        raise ApiError(400, f"invalid chunk size {digits[:20]!r}")
    return int(digits, 16)
