"""PNG metadata chunks (eXIf and tEXt/zTXt/iTXt) read straight from the bytes, wherever they sit.

Pillow reaches chunks that follow the pixel data only by decoding the pixels first; walking the chunk list
finds them without touching a single IDAT, so metadata never costs a decode (nor a second one when libvips
makes the thumbnail) and is read before the pixel limit is checked.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT = 1024 * 1024  # decompressed size of one text chunk: bounds a zlib bomb
MAX_CHUNKS = 100_000


@dataclass
class PngMetadata:
    exif: bytes | None = None
    text: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def read_chunks(data: bytes) -> PngMetadata:
    """eXIf payload and text chunks of a PNG; damaged chunks are skipped and reported in `problems`."""
    found = PngMetadata()
    pos = len(SIGNATURE)
    for _ in range(MAX_CHUNKS):
        if pos + 8 > len(data):
            break
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IEND" or len(body) < length:
            break
        try:
            _take(found, kind, body)
        except (ValueError, zlib.error, UnicodeDecodeError) as exc:
            found.problems.append(f"PNG {kind.decode('latin-1')} chunk unreadable: {exc}")
    return found


def _take(found: PngMetadata, kind: bytes, body: bytes) -> None:
    if kind == b"eXIf" and found.exif is None:
        found.exif = body
    elif kind == b"tEXt":
        keyword, _, text = body.partition(b"\x00")
        found.text.setdefault(keyword.decode("latin-1"), text.decode("latin-1"))
    elif kind == b"zTXt":
        keyword, _, rest = body.partition(b"\x00")
        found.text.setdefault(keyword.decode("latin-1"), _inflate(rest[1:]).decode("latin-1"))
    elif kind == b"iTXt":
        keyword, _, rest = body.partition(b"\x00")
        compressed, rest = rest[:1] == b"\x01", rest[2:]
        _language, _, rest = rest.partition(b"\x00")
        _translated, _, text = rest.partition(b"\x00")
        found.text.setdefault(keyword.decode("latin-1"), (_inflate(text) if compressed else text).decode("utf-8"))


def _inflate(compressed: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(compressed, MAX_TEXT)
    if inflater.unconsumed_tail:
        raise ValueError(f"text larger than {MAX_TEXT} bytes")
    return out
