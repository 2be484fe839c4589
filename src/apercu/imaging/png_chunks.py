"""PNG metadata chunks (eXIf and tEXt/zTXt/iTXt) read straight from the bytes, wherever they sit.

Pillow reaches chunks that follow the pixel data only by decoding the pixels first; walking the chunk list
finds them without touching a single IDAT, so metadata never costs a decode (nor a second one when libvips
makes the thumbnail) and is read before the pixel limit is checked. Compressed text is a zlib bomb waiting to
happen: each chunk inflates to at most MAX_TEXT_CHUNK and all of them together to MAX_TEXT_TOTAL; beyond that,
chunks are dropped with a problem noted.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from apercu.imaging.limits import MAX_TEXT_CHUNK, MAX_TEXT_TOTAL

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CHUNKS = 100_000
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
METADATA_CHUNKS = (b"eXIf", *TEXT_CHUNKS)


@dataclass
class PngMetadata:
    exif: bytes | None = None
    text: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    text_bytes: int = 0  # decompressed size of the text read so far


def chunks(data: bytes, kinds: Collection[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """(type, body) of each complete chunk of one of `kinds` up to IEND; a truncated chunk of any type ends the
    walk. Only the bodies asked for are sliced out: slicing is copying, and copying every IDAT cost ~1 ms for
    an 18 MB PNG, more than the walk. CRCs are not checked: Pillow checks those it reads, and metadata in a
    chunk with a bad CRC is still what the file says."""
    pos = len(SIGNATURE)
    for _ in range(MAX_CHUNKS):
        if pos + 8 > len(data):
            return
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        end = pos + 8 + length
        if kind == b"IEND" or end > len(data):
            return
        if kind in kinds:
            yield kind, data[pos + 8 : end]
        pos = end + 4


def read_chunks(data: bytes) -> PngMetadata:
    """eXIf payload and text chunks of a PNG; damaged chunks are skipped and reported in `problems`."""
    found = PngMetadata()
    for kind, body in chunks(data, METADATA_CHUNKS):
        if kind in TEXT_CHUNKS and found.text_bytes >= MAX_TEXT_TOTAL:
            found.problems.append(f"PNG text chunks beyond {MAX_TEXT_TOTAL} bytes in total ignored")
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
        _add_text(found, keyword, text.decode("latin-1"))
    elif kind == b"zTXt":
        keyword, _, rest = body.partition(b"\x00")
        _add_text(found, keyword, _inflate(rest[1:]).decode("latin-1"))
    elif kind == b"iTXt":
        keyword, _, rest = body.partition(b"\x00")
        compressed, rest = rest[:1] == b"\x01", rest[2:]
        _language, _, rest = rest.partition(b"\x00")
        _translated, _, text = rest.partition(b"\x00")
        _add_text(found, keyword, (_inflate(text) if compressed else text).decode("utf-8"))


def _add_text(found: PngMetadata, keyword: bytes, text: str) -> None:
    found.text_bytes += len(text)
    found.text.setdefault(keyword.decode("latin-1"), text)


def _inflate(compressed: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(compressed, MAX_TEXT_CHUNK)
    if inflater.unconsumed_tail:
        raise ValueError(f"text larger than {MAX_TEXT_CHUNK} bytes")
    return out
