"""Structure-aware fuzzing of the imaging entry points, shared by tests/test_fuzz.py and bench/fuzz.py.

A case is identified by (seed, index) and a base list (the generated seed images of `images.FUZZ_SEEDS`, or a
sample of the corpus): `make_case` derives everything from `random.Random(f"{seed}:{index}")`, so the same
three always give the same bytes. A case picks a base image and applies one to three mutations. Besides bit
flips, byte sets and truncation, the mutators know the structures the decoders parse: TIFF IFD entries (in TIFF
files and in every EXIF block), PNG chunks (with the CRC fixed afterwards, so that the reader gets past it),
JPEG marker segments and SOF fields, GIF/BMP/TGA headers, RIFF (WebP) and ISO-BMFF (HEIF, AVIF) boxes, and
declared dimensions. They can also insert crafted blocks: zlib bombs in PNG text and ICC chunks, mutated EXIF,
ICC and IPTC segments.

`run_case` calls every entry point on one input and reports whatever is not `ProcessingFailed`: the contract of
`apercu.imaging` is that nothing else ever leaves it, and that all metadata is strict JSON.
"""

from __future__ import annotations

import functools
import io
import json
import random
import struct
import time
import traceback
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import images
from PIL import Image

from apercu.imaging.analyse import Options, ProcessingFailed, analyse, render_rendition, render_variant
from apercu.imaging.formats import Format, sniff
from apercu.imaging.renditions.options import parse
from apercu.inspect import inspect_file

U8 = (0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF)
U16 = (0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
U32 = (*U16, 0x10000, 0xFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
HUGE_SIDE = 100_000
MIB = 1024 * 1024

Mutator = Callable[[bytearray, random.Random], "str | None"]
MUTATORS: dict[str, tuple[int, Mutator]] = {}


def mutator(weight: int) -> Callable[[Mutator], Mutator]:
    """Register a mutator: it changes the data in place and says what it did, or returns None (and changes
    nothing) when the structure it knows is not in the data."""

    def register(fn: Mutator) -> Mutator:
        MUTATORS[fn.__name__] = (weight, fn)
        return fn

    return register


# --- small helpers ------------------------------------------------------------------------------------------


def kind(data: bytes | bytearray) -> str:
    """The container format, from the magic bytes (TGA, which has none, is whatever is left)."""
    head = bytes(data[:12])
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:3] == b"GIF":
        return "GIF"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        return "ISOBMFF"
    return "TGA"


def put(data: bytearray, pos: int, size: int, value: int, order: str = ">") -> bool:
    """Write an unsigned integer of `size` bytes at pos when it fits in the data (value wrapped to the size)."""
    if pos < 0 or pos + size > len(data):
        return False
    data[pos : pos + size] = (value % (1 << (8 * size))).to_bytes(size, "big" if order == ">" else "little")
    return True


def get(data: bytes | bytearray, pos: int, size: int, order: str = ">") -> int:
    return int.from_bytes(data[pos : pos + size], "big" if order == ">" else "little")


def interesting(rng: random.Random, size: int, current: int = 0) -> int:
    """A boundary value for a field of `size` bytes, an off-by-a-little of the current one, or a random one."""
    roll = rng.random()
    if roll < 0.5:
        return rng.choice({1: U8, 2: U16}.get(size, U32))
    if roll < 0.75:
        return (current + rng.choice((-2, -1, 1, 2, 8, 64))) % (1 << (8 * size))
    return rng.getrandbits(8 * size)


def header_biased_position(data: bytearray, rng: random.Random) -> int:
    """Half the time in the first 256 bytes, where the headers are."""
    limit = len(data) if rng.random() < 0.5 else min(len(data), 256)
    return rng.randrange(max(1, limit))


# --- generic mutators ---------------------------------------------------------------------------------------


@mutator(weight=3)
def flip_bits(data: bytearray, rng: random.Random) -> str | None:
    positions = [header_biased_position(data, rng) for _ in range(rng.randint(1, 8))]
    for pos in positions:
        data[pos] ^= 1 << rng.randrange(8)
    return f"flip_bits at {positions}"


@mutator(weight=3)
def set_bytes(data: bytearray, rng: random.Random) -> str | None:
    changes = []
    for _ in range(rng.randint(1, 4)):
        pos, size = header_biased_position(data, rng), rng.choice((1, 2, 4))
        order = rng.choice("<>")
        value = interesting(rng, size, get(data, pos, size, order))
        if put(data, pos, size, value, order):
            changes.append(f"{pos}:{size}{order}={value:#x}")
    return f"set_bytes {changes}"


@mutator(weight=3)
def truncate(data: bytearray, rng: random.Random) -> str | None:
    cut = header_biased_position(data, rng) if rng.random() < 0.5 else rng.randrange(len(data) // 2, len(data))
    del data[cut:]
    return f"truncate to {cut} bytes"


@mutator(weight=1)
def splice(data: bytearray, rng: random.Random) -> str | None:
    """Delete, duplicate or insert random bytes in a range: shifts every offset after it."""
    start = rng.randrange(len(data))
    length = rng.randint(1, min(256, len(data) - start))
    action = rng.choice(("delete", "duplicate", "insert"))
    if action == "delete":
        del data[start : start + length]
    elif action == "duplicate":
        data[start:start] = data[start : start + length]
    else:
        data[start:start] = rng.randbytes(length)
    return f"splice {action} {length} bytes at {start}"


# --- TIFF: files, and the EXIF blocks of JPEG, PNG and WebP ---------------------------------------------------

TIFF_SUB_IFDS = {0x8769, 0x8825, 0xA005, 0x014A}
TIFF_STRUCTURAL_TAGS = (256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338, 339,
                        0x0112, 0x8769, 0x8825, 0xA005, 0x014A, 700, 33723, 34377, 34675)
TIFF_TYPES = tuple(range(0, 20))


@dataclass
class TiffLayout:
    """Where the IFD structures of every TIFF header in the data are (absolute positions)."""

    entries: list[tuple[int, str]] = field(default_factory=list)  # (position of a 12-byte entry, byte order)
    counts: list[tuple[int, str]] = field(default_factory=list)  # position of an IFD's 2-byte entry count
    next_pointers: list[tuple[int, str, int]] = field(default_factory=list)  # (position, order, TIFF base)


def tiff_layout(data: bytes | bytearray, max_headers: int = 4) -> TiffLayout:
    layout = TiffLayout()
    for base in _tiff_headers(bytes(data), max_headers):
        order = "<" if data[base] == ord("I") else ">"
        _walk_ifds(data, base, order, layout)
    return layout


def _tiff_headers(data: bytes, limit: int) -> Iterator[int]:
    found = sorted(pos for magic in (b"II*\x00", b"MM\x00*") for pos in _occurrences(data, magic, limit))
    yield from found[:limit]


def _occurrences(data: bytes, needle: bytes, limit: int) -> Iterator[int]:
    pos = data.find(needle)
    while pos >= 0 and limit > 0:
        yield pos
        limit -= 1
        pos = data.find(needle, pos + 1)


def _walk_ifds(data: bytes | bytearray, base: int, order: str, layout: TiffLayout) -> None:
    """Classic TIFF IFDs from the header's first offset, the next-IFD chain and the sub-IFD pointers."""
    pending, seen = [get(data, base + 4, 4, order)], set[int]()
    while pending and len(seen) < 16:
        offset = pending.pop()
        pos = base + offset
        if offset in seen or offset < 8 or pos + 2 > len(data):
            continue
        seen.add(offset)
        layout.counts.append((pos, order))
        count = get(data, pos, 2, order)
        for i in range(min(count, 512)):
            entry = pos + 2 + 12 * i
            if entry + 12 > len(data):
                return
            layout.entries.append((entry, order))
            tag, typ, n = get(data, entry, 2, order), get(data, entry + 2, 2, order), get(data, entry + 4, 4, order)
            if tag in TIFF_SUB_IFDS and typ in (4, 13) and n == 1:
                pending.append(get(data, entry + 8, 4, order))
        next_pos = pos + 2 + 12 * count
        if next_pos + 4 <= len(data):
            layout.next_pointers.append((next_pos, order, base))
            pending.append(get(data, next_pos, 4, order))


@mutator(weight=6)
def tiff_entry(data: bytearray, rng: random.Random) -> str | None:
    """One field of one IFD entry: its tag, type, value count or value/offset (structural tags preferred)."""
    layout = tiff_layout(data)
    if not layout.entries:
        return None
    structural = [e for e in layout.entries if get(data, e[0], 2, e[1]) in TIFF_STRUCTURAL_TAGS]
    pos, order = rng.choice(structural if structural and rng.random() < 0.7 else layout.entries)
    tag = get(data, pos, 2, order)
    what, offset, size = rng.choice((("tag", 0, 2), ("type", 2, 2), ("count", 4, 4), ("value", 8, 4), ("value", 8, 4)))
    if what == "tag":
        value = rng.choice(TIFF_STRUCTURAL_TAGS) if rng.random() < 0.7 else rng.getrandbits(16)
    elif what == "type":
        value = rng.choice(TIFF_TYPES)
    elif what == "value" and rng.random() < 0.3:
        value = rng.choice((len(data), len(data) + rng.randint(1, 4096), 0, 8, pos))  # past the end, header, self
    else:
        value = interesting(rng, size, get(data, pos + offset, size, order))
    put(data, pos + offset, size, value, order)
    return f"tiff_entry at {pos} (tag {tag}) {what}={value:#x}"


@mutator(weight=2)
def tiff_ifd_count(data: bytearray, rng: random.Random) -> str | None:
    counts = tiff_layout(data).counts
    if not counts:
        return None
    pos, order = rng.choice(counts)
    value = interesting(rng, 2, get(data, pos, 2, order))
    put(data, pos, 2, value, order)
    return f"tiff_ifd_count at {pos} = {value}"


@mutator(weight=2)
def tiff_next_ifd(data: bytearray, rng: random.Random) -> str | None:
    """The next-IFD pointer: a loop back to an IFD already read, past the end, or anywhere."""
    layout = tiff_layout(data)
    if not layout.next_pointers:
        return None
    pos, order, base = rng.choice(layout.next_pointers)
    loops = [p - base for p, _ in layout.counts if p >= base]
    value = rng.choice(loops) if loops and rng.random() < 0.5 else interesting(rng, 4, get(data, pos, 4, order))
    put(data, pos, 4, value, order)
    return f"tiff_next_ifd at {pos} = {value:#x}"


# --- PNG ----------------------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunks(data: bytes | bytearray) -> list[tuple[int, int, bytes]]:
    """(position, declared length, type) of each chunk, as far as the lengths can be followed."""
    chunks: list[tuple[int, int, bytes]] = []
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data) and len(chunks) < 10_000:
        length, ctype = get(data, pos, 4), bytes(data[pos + 4 : pos + 8])
        chunks.append((pos, length, ctype))
        pos += 12 + length
    return chunks


def png_chunks_of(data: bytearray, complete: bool) -> list[tuple[int, int, bytes]]:
    """The chunks of a PNG (none for another format); with `complete`, only those wholly inside the file."""
    if kind(data) != "PNG":
        return []
    chunks = png_chunks(data)
    return [c for c in chunks if c[0] + 12 + c[1] <= len(data)] if complete else chunks


def fix_png_crcs(data: bytearray) -> None:
    """Recompute the CRC of every complete chunk: a mutated chunk is then read instead of refused."""
    for pos, length, _ in png_chunks(data):
        end = pos + 8 + length
        if end + 4 <= len(data):
            put(data, end, 4, zlib.crc32(data[pos + 4 : end]))


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


@mutator(weight=3)
def png_length(data: bytearray, rng: random.Random) -> str | None:
    chunks = png_chunks_of(data, complete=False)
    if not chunks:
        return None
    pos, length, ctype = rng.choice(chunks)
    value = interesting(rng, 4, length)
    put(data, pos, 4, value)
    return f"png_length of {ctype!r} at {pos} = {value:#x}"


@mutator(weight=1)
def png_crc(data: bytearray, rng: random.Random) -> str | None:
    chunks = png_chunks_of(data, complete=True)
    if not chunks:
        return None
    pos, length, ctype = rng.choice(chunks)
    put(data, pos + 8 + length, 4, rng.getrandbits(32))
    return f"png_crc of {ctype!r} at {pos}"


@mutator(weight=4)
def png_body(data: bytearray, rng: random.Random) -> str | None:
    """Bytes of one chunk's body (IHDR and the ancillary chunks preferred), with its CRC fixed."""
    chunks = [c for c in png_chunks_of(data, complete=True) if c[1]]
    if not chunks:
        return None
    preferred = [c for c in chunks if c[2] != b"IDAT"]
    pos, length, ctype = rng.choice(preferred if preferred and rng.random() < 0.8 else chunks)
    changes = []
    for _ in range(rng.randint(1, 4)):
        at, size = pos + 8 + rng.randrange(length), rng.choice((1, 1, 2, 4))
        if at + size <= pos + 8 + length and put(data, at, size, value := interesting(rng, size, get(data, at, size))):
            changes.append(f"+{at - pos - 8}={value:#x}")
    put(data, pos + 8 + length, 4, zlib.crc32(data[pos + 4 : pos + 8 + length]))
    return f"png_body of {ctype!r} at {pos}: {changes}"


@functools.cache
def zlib_bomb(size: int) -> bytes:
    """`size` zero bytes, deflated: about a thousandth of that on disk."""
    return zlib.compress(b"\x00" * size, 9)


def png_extra_chunk(rng: random.Random) -> tuple[str, bytes]:
    """A crafted chunk with a valid CRC: a decompression bomb, a mutated EXIF block, or odd animation chunks."""
    choice = rng.randrange(8)
    if choice < 3:
        size = rng.choice((2, 8, 64))
        ctype, head = ((b"zTXt", b"Bomb\x00\x00"), (b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00en\x00\x00"),
                       (b"iCCP", b"icc\x00\x00"))[choice]
        return f"{ctype.decode()} bomb of {size} MiB", png_chunk(ctype, head + zlib_bomb(size * MIB))
    if choice == 3:
        exif = bytearray(images.exif_block(orientation=6, gps=True).tobytes())
        return f"eXIf with {tiff_entry(exif, rng)}", png_chunk(b"eXIf", bytes(exif))
    if choice == 4:
        return "acTL", png_chunk(b"acTL", struct.pack(">II", interesting(rng, 4), interesting(rng, 4)))
    if choice == 5:
        fields = [interesting(rng, 4) for _ in range(5)] + [interesting(rng, 2) for _ in range(2)]
        return "fcTL", png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", *fields, rng.randrange(4), rng.randrange(3)))
    if choice == 6:
        return "zTXt not zlib", png_chunk(b"zTXt", b"Key\x00\x00" + rng.randbytes(rng.randint(0, 64)))
    return "iCCP not a profile", png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(rng.randbytes(rng.randint(0, 200))))


@mutator(weight=3)
def png_insert(data: bytearray, rng: random.Random) -> str | None:
    """A crafted chunk before the first IDAT or after the last one (where Pillow does not look on open)."""
    chunks = png_chunks_of(data, complete=False)
    idat = [pos for pos, _, ctype in chunks if ctype == b"IDAT"]
    if not idat:
        return None
    what, chunk = png_extra_chunk(rng)
    before = rng.random() < 0.5
    at = idat[0] if before else next((pos for pos, _, ctype in chunks if ctype == b"IEND"), len(data))
    data[at:at] = chunk
    return f"png_insert {what} {'before' if before else 'after'} the pixels"


@mutator(weight=2)
def png_reorder(data: bytearray, rng: random.Random) -> str | None:
    """Drop or duplicate a whole chunk (a second IHDR, a missing PLTE, an IDAT twice)."""
    chunks = png_chunks_of(data, complete=True)
    if not chunks:
        return None
    pos, length, ctype = rng.choice(chunks)
    chunk = bytes(data[pos : pos + 12 + length])
    if rng.random() < 0.5:
        del data[pos : pos + 12 + length]
        return f"png_reorder dropped {ctype!r}"
    at = rng.choice(chunks)[0]
    data[at:at] = chunk
    return f"png_reorder copied {ctype!r} to {at}"


# --- JPEG ---------------------------------------------------------------------------------------------------

SOF_MARKERS = {m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC)}


def jpeg_segments(data: bytes | bytearray) -> list[tuple[int, int, int]]:
    """(position of the marker, marker, declared length) of each segment up to and including SOS."""
    segments: list[tuple[int, int, int]] = []
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and len(segments) < 1000:
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:
            pos += 2
            continue
        length = get(data, pos + 2, 2)
        segments.append((pos, marker, length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return segments


@mutator(weight=3)
def jpeg_length(data: bytearray, rng: random.Random) -> str | None:
    segments = jpeg_segments(data) if kind(data) == "JPEG" else []
    if not segments:
        return None
    pos, marker, length = rng.choice(segments)
    value = interesting(rng, 2, length)
    put(data, pos + 2, 2, value)
    return f"jpeg_length of {marker:#x} at {pos} = {value}"


@mutator(weight=4)
def jpeg_sof(data: bytearray, rng: random.Random) -> str | None:
    """SOF precision, height, width, component count, or a component's sampling factors / table."""
    segments = [s for s in jpeg_segments(data) if s[1] in SOF_MARKERS] if kind(data) == "JPEG" else []
    if not segments:
        return None
    pos, marker, _ = rng.choice(segments)
    what, offset, size = rng.choice((("precision", 4, 1), ("height", 5, 2), ("width", 7, 2), ("components", 9, 1),
                                     ("sampling", 11, 1), ("table", 12, 1)))
    value = rng.choice((0, 1, 2, 3, 4, 5, 8, 12, 16, 0x11, 0x22, 0x44, 0xFF)) if size == 1 else interesting(rng, 2)
    put(data, pos + offset, size, value)
    return f"jpeg_sof {marker:#x} {what}={value}"


@mutator(weight=2)
def jpeg_segment_body(data: bytearray, rng: random.Random) -> str | None:
    """Bytes inside a segment (tables, APPn payloads, the scan header)."""
    segments = [s for s in jpeg_segments(data) if s[2] > 2] if kind(data) == "JPEG" else []
    if not segments:
        return None
    pos, marker, length = rng.choice(segments)
    at = pos + 4 + rng.randrange(length - 2)
    if at >= len(data):
        return None
    data[at] = rng.choice(U8) if rng.random() < 0.5 else rng.getrandbits(8)
    return f"jpeg_segment_body of {marker:#x} at {at} = {data[at]:#x}"


def jpeg_extra_segment(rng: random.Random) -> tuple[str, bytes]:
    """APP1 EXIF with a mutated IFD, APP2 ICC chunks numbered wrongly, APP13 with mutated IPTC, or XMP junk."""
    choice = rng.randrange(4)
    if choice == 0:
        exif = bytearray(images.exif_block(orientation=6, gps=True).tobytes())
        what = tiff_entry(exif, rng)
        payload, name = b"Exif\x00\x00" + bytes(exif), f"APP1 EXIF with {what}"
        return name, b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    if choice == 1:
        profile = bytearray(images.adobe_rgb_profile())
        put(profile, rng.choice((0, 128, 132 + 12 * rng.randrange(8) + 4, 132 + 12 * rng.randrange(8) + 8)), 4,
            interesting(rng, 4))
        sequence, count = rng.choice(U8), rng.choice(U8)
        payload = b"ICC_PROFILE\x00" + bytes([sequence, count]) + bytes(profile)
        return f"APP2 ICC chunk {sequence}/{count}", b"\xff\xe2" + (len(payload) + 2).to_bytes(2, "big") + payload
    if choice == 2:
        iptc = bytearray(images.iptc_datasets())
        put(iptc, rng.randrange(len(iptc)), rng.choice((1, 2)), interesting(rng, 2))
        return "APP13 with mutated IPTC", images.photoshop_app13(bytes(iptc))
    packet = images.XMP_PACKET[: rng.randrange(len(images.XMP_PACKET))] + rng.randbytes(8)
    payload = b"http://ns.adobe.com/xap/1.0/\x00" + packet
    return "APP1 XMP cut short", b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


@mutator(weight=2)
def jpeg_insert(data: bytearray, rng: random.Random) -> str | None:
    if kind(data) != "JPEG":
        return None
    what, segment = jpeg_extra_segment(rng)
    data[2:2] = segment
    return f"jpeg_insert {what}"


# --- GIF, BMP, TGA: fixed headers ---------------------------------------------------------------------------


def gif_fields(data: bytes | bytearray) -> list[tuple[str, int, int]]:
    """(name, position, size) of the logical screen fields and of every block's fields and sub-block lengths."""
    fields = [("screen width", 6, 2), ("screen height", 8, 2), ("screen flags", 10, 1), ("background", 11, 1)]
    pos = 13 + (3 << ((data[10] & 7) + 1) if len(data) > 10 and data[10] & 0x80 else 0)
    while pos < len(data) and len(fields) < 500:
        block = data[pos]
        if block == 0x2C:  # image descriptor, then the LZW minimum code size and the data sub-blocks
            fields += [("frame x", pos + 1, 2), ("frame y", pos + 3, 2), ("frame width", pos + 5, 2),
                       ("frame height", pos + 7, 2), ("frame flags", pos + 9, 1)]
            flags = data[pos + 9] if pos + 9 < len(data) else 0
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            fields.append(("LZW code size", pos, 1))
            pos += 1
        elif block == 0x21:  # extension: label, then sub-blocks
            fields.append(("extension label", pos + 1, 1))
            pos += 2
        else:
            break
        while pos < len(data) and data[pos]:
            fields.append(("sub-block length", pos, 1))
            if data[pos] >= 4:
                fields.append(("sub-block field", pos + 1 + (data[pos] >= 4) * 2, 2))  # GCE delay, loop count
            pos += 1 + data[pos]
        pos += 1
    return fields


BMP_FIELDS = [("file size", 2, 4), ("pixel offset", 10, 4), ("header size", 14, 4), ("width", 18, 4),
              ("height", 22, 4), ("planes", 26, 2), ("bits per pixel", 28, 2), ("compression", 30, 4),
              ("image size", 34, 4), ("colours used", 46, 4), ("red mask", 54, 4), ("alpha mask", 66, 4)]
TGA_FIELDS = [("id length", 0, 1), ("colour map type", 1, 1), ("image type", 2, 1), ("colour map start", 3, 2),
              ("colour map length", 5, 2), ("colour map depth", 7, 1), ("x origin", 8, 2), ("y origin", 10, 2),
              ("width", 12, 2), ("height", 14, 2), ("depth", 16, 1), ("descriptor", 17, 1)]


def _set_field(data: bytearray, rng: random.Random, fields: list[tuple[str, int, int]], order: str, fmt: str) -> str:
    name, pos, size = rng.choice(fields)
    value = interesting(rng, size, get(data, pos, size, order))
    if fmt == "BMP" and name == "bits per pixel" and rng.random() < 0.5:
        value = rng.choice((0, 1, 2, 4, 8, 16, 24, 32, 64))
    put(data, pos, size, value, order)
    return f"{fmt.lower()}_field {name}={value:#x}"


@mutator(weight=4)
def header_field(data: bytearray, rng: random.Random) -> str | None:
    """A field of a GIF (screen, frames, extensions, sub-blocks), BMP or TGA header."""
    fmt = kind(data)
    fields = {"GIF": gif_fields, "BMP": lambda _: BMP_FIELDS, "TGA": lambda _: TGA_FIELDS}.get(fmt)
    if fields is None:
        return None
    return _set_field(data, rng, fields(data), "<", fmt)


# --- RIFF (WebP) and ISO-BMFF (HEIF, AVIF) ------------------------------------------------------------------


def riff_chunks(data: bytes | bytearray) -> list[tuple[int, bytes, int]]:
    """(position, FourCC, size) of the WebP chunks, and of the frames inside ANMF."""
    chunks: list[tuple[int, bytes, int]] = []
    pos = 12
    while pos + 8 <= len(data) and len(chunks) < 1000:
        fourcc, size = bytes(data[pos : pos + 4]), get(data, pos + 4, 4, "<")
        chunks.append((pos, fourcc, size))
        pos = pos + 8 + 16 if fourcc == b"ANMF" else pos + 8 + size + (size & 1)
    return chunks


WEBP_FIELDS = {  # FourCC -> (name, offset in the payload, size)
    b"VP8X": [("flags", 0, 1), ("canvas width-1", 4, 3), ("canvas height-1", 7, 3)],
    b"ANIM": [("background", 0, 4), ("loop count", 4, 2)],
    b"ANMF": [("frame x", 0, 3), ("frame y", 3, 3), ("frame width-1", 6, 3), ("frame height-1", 9, 3),
              ("duration", 12, 3), ("flags", 15, 1)],
    b"VP8 ": [("frame tag", 0, 3), ("width", 6, 2), ("height", 8, 2)],
    b"VP8L": [("signature", 0, 1), ("size bits", 1, 4)],
}


@mutator(weight=4)
def webp_field(data: bytearray, rng: random.Random) -> str | None:
    """The RIFF size, a chunk size, or a field of VP8X/ANIM/ANMF/VP8/VP8L."""
    chunks = riff_chunks(data) if kind(data) == "WEBP" else []
    if not chunks:
        return None
    pos, fourcc, size = rng.choice(chunks)
    fields = WEBP_FIELDS.get(fourcc, [])
    if not fields or rng.random() < 0.3:
        at = 4 if rng.random() < 0.2 else pos + 4
        value = interesting(rng, 4, get(data, at, 4, "<"))
        put(data, at, 4, value, "<")
        return f"webp_field size at {at} = {value:#x}"
    name, offset, width = rng.choice(fields)
    value = interesting(rng, width, get(data, pos + 8 + offset, width, "<"))
    put(data, pos + 8 + offset, width, value, "<")
    return f"webp_field {fourcc!r} {name}={value:#x}"


ISO_CONTAINERS = {b"meta": 4, b"iprp": 0, b"ipco": 0, b"iinf": 6, b"dinf": 0, b"moov": 0, b"trak": 0}


def iso_boxes(data: bytes | bytearray, start: int = 0, end: int = -1, depth: int = 0) -> list[tuple[int, bytes]]:
    """(position, type) of the ISO-BMFF boxes, descending into the containers HEIF keeps its items in."""
    boxes: list[tuple[int, bytes]] = []
    pos, end = start, len(data) if end < 0 else min(end, len(data))
    while pos + 8 <= end and len(boxes) < 500:
        size, btype = get(data, pos, 4), bytes(data[pos + 4 : pos + 8])
        boxes.append((pos, btype))
        if btype in ISO_CONTAINERS and depth < 4:
            boxes += iso_boxes(data, pos + 8 + ISO_CONTAINERS[btype], pos + size, depth + 1)
        if size < 8:
            break
        pos += size
    return boxes


@mutator(weight=3)
def iso_box(data: bytearray, rng: random.Random) -> str | None:
    """A box size, or a field of an image spatial extent (`ispe`) or item location (`iloc`) box."""
    boxes = iso_boxes(data) if kind(data) == "ISOBMFF" else []
    if not boxes:
        return None
    pos, btype = rng.choice(boxes)
    at = pos if rng.random() < 0.4 else pos + 8 + rng.randrange(16)
    value = interesting(rng, 4, get(data, at, 4))
    put(data, at, 4, value)
    return f"iso_box {btype!r} at {pos}: +{at - pos}={value:#x}"


# --- declared dimensions ------------------------------------------------------------------------------------


def _huge_png(data: bytearray, side: int) -> bool:
    chunks = png_chunks(data)
    if not chunks or chunks[0][2] != b"IHDR":
        return False
    put(data, 16, 4, side)
    put(data, 20, 4, side)
    fix_png_crcs(data)
    return True


def _huge_jpeg(data: bytearray, side: int) -> bool:
    sof = [pos for pos, marker, _ in jpeg_segments(data) if marker in SOF_MARKERS]
    return bool(sof) and put(data, sof[0] + 5, 2, min(side, 0xFFFF)) and put(data, sof[0] + 7, 2, min(side, 0xFFFF))


def _huge_tiff(data: bytearray, side: int) -> bool:
    layout = tiff_layout(data)
    changed = False
    for pos, order in layout.entries:
        if get(data, pos, 2, order) in (256, 257):
            typ = get(data, pos + 2, 2, order)
            changed |= put(data, pos + 8, 2 if typ == 3 else 4, min(side, 0xFFFF) if typ == 3 else side, order)
    return changed


def _huge_webp(data: bytearray, side: int) -> bool:
    vp8x = [pos for pos, fourcc, _ in riff_chunks(data) if fourcc == b"VP8X"]
    return bool(vp8x) and put(data, vp8x[0] + 12, 3, side - 1, "<") and put(data, vp8x[0] + 15, 3, side - 1, "<")


HUGE = {
    "PNG": _huge_png,
    "JPEG": _huge_jpeg,
    "TIFF": _huge_tiff,
    "WEBP": _huge_webp,
    "GIF": lambda d, side: put(d, 6, 2, side, "<") and put(d, 8, 2, side, "<"),
    "BMP": lambda d, side: put(d, 18, 4, side, "<") and put(d, 22, 4, side, "<"),
    "TGA": lambda d, side: put(d, 12, 2, side, "<") and put(d, 14, 2, side, "<"),
}


@mutator(weight=2)
def huge_dimensions(data: bytearray, rng: random.Random) -> str | None:
    """Declare an enormous canvas (100000x100000, or as large as the field allows) over the same few bytes."""
    side = rng.choice((HUGE_SIDE, 0xFFFF, 0x7FFF, 20_000))
    setter = HUGE.get(kind(data))
    return f"huge_dimensions {side}" if setter and setter(data, side) else None


# --- cases --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    seed: int
    index: int
    base: str
    steps: tuple[str, ...]
    data: bytes

    def describe(self) -> str:
        return f"case seed={self.seed} index={self.index}: {self.base}, " + "; ".join(self.steps)


@functools.cache
def generated_bases() -> dict[str, bytes]:
    """The seed images of every format, made once per process."""
    return {name: factory() for name, factory in images.FUZZ_SEEDS.items()}


def corpus_bases(files: list[Path], per_folder: int = 6, max_bytes: int = 64 * 1024) -> dict[str, bytes]:
    """Up to `per_folder` small corpus files of each folder, spread evenly over its sorted list, by name: small,
    because a case costs what decoding its base costs."""
    folders: dict[str, list[Path]] = {}
    for path in sorted(files):
        if path.stat().st_size <= max_bytes:
            folders.setdefault(path.parent.name, []).append(path)
    chosen = [p for paths in folders.values() for p in paths[:: max(1, len(paths) // per_folder)][:per_folder]]
    return {f"corpus:{p.parent.name}/{p.name}": p.read_bytes() for p in chosen}


def make_case(seed: int, index: int, bases: dict[str, bytes]) -> Case:
    rng = random.Random(f"{seed}:{index}")
    base = rng.choice(sorted(bases))
    data = bytearray(bases[base])
    names = sorted(MUTATORS)
    weights = [MUTATORS[name][0] for name in names]
    steps = []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
        if not data:
            break
        for _attempt in range(30):
            done = MUTATORS[rng.choices(names, weights)[0]][1](data, rng)
            if done:
                steps.append(done)
                break
    if kind(data) == "PNG" and rng.random() < 0.5:
        fix_png_crcs(data)
        steps.append("PNG CRCs fixed")
    return Case(seed, index, base, tuple(steps), bytes(data))


# --- running a case -----------------------------------------------------------------------------------------

# A quarter of the production pixel limit: decoding a legitimately large canvas (a valid 86-megapixel animated
# WebP of 374 bytes) takes Pillow about 4.5 s here, which is the limit doing its job, not a finding; what the time
# bound is for is work out of proportion to the canvas (the time bombs in test_fuzz.py took 17 to 95 s).
FUZZ_OPTIONS = Options(thumbnail_size=64, max_pixels=25_000_000)
TIME_BOUND = 5.0  # seconds per case, all entry points together
PRODUCTION = Options(thumbnail_size=64)  # the default pixel limit


@dataclass(frozen=True)
class Crash:
    entry: str  # which entry point
    error: str  # exception class: message
    trace: str


@dataclass(frozen=True)
class Outcome:
    seconds: float
    crashes: tuple[Crash, ...]
    recognised: bool  # by sniff
    processed: bool  # analyse returned a result


# A rendition that takes every step of the renderer but encoding AVIF (slow, and libheif's own): cover by a
# focal point, turned, blurred and sharpened, as PNG (which keeps alpha).
FUZZ_RENDITION = parse(["w:24", "h:16", "fit:cover", "g:focal", "rot:90", "sharpen:1", "blur:0.5"], "png")


def run_case(data: bytes, scratch: Path, options: Options = FUZZ_OPTIONS, render: bool = False) -> Outcome:
    """sniff, then the inspect path (sniff + analyse, on a file) or analyse directly when sniff refused the
    bytes (the worker must survive any bytes), and render_variant when asked. Reports anything but
    ProcessingFailed, and metadata that is not strict JSON."""
    crashes: list[Crash] = []
    started = time.perf_counter()
    fmt = _call(crashes, "sniff", lambda: _checked_sniff(data))
    if fmt is not None:
        scratch.write_bytes(data)
        result = _call(crashes, "inspect_file", lambda: _strict_json(inspect_file(scratch, options)))
        processed = isinstance(result, dict) and "metadata" in result and "error" not in result
    else:
        processed = bool(_call(crashes, "analyse", lambda: _strict_json(analyse(data, options).metadata)))
    if render:
        _call(crashes, "render_variant", lambda: render_variant(data, options, 32, "WEBP"))
        _call(crashes, "render_rendition", lambda: render_rendition(
            data, FUZZ_RENDITION, options, max_output_pixels=options.max_pixels, focal_point={"x": 0.3, "y": 0.6}))
    return Outcome(time.perf_counter() - started, tuple(crashes), fmt is not None, processed)


def _checked_sniff(data: bytes) -> Format | None:
    fmt = sniff(io.BytesIO(data))
    if fmt is not None and not isinstance(fmt, Format):
        raise TypeError(f"sniff returned {fmt!r}")
    return fmt


def _strict_json(value: dict[str, Any]) -> dict[str, Any]:
    json.dumps(value, allow_nan=False)
    return value


def _call(crashes: list[Crash], entry: str, call: Callable[[], object]) -> object:
    """call(), recording as a crash any exception but ProcessingFailed (and even that from sniff, which answers
    None instead) and failure metadata that is not strict JSON."""
    try:
        try:
            return call()
        except ProcessingFailed as exc:
            if entry == "sniff":
                raise
            _strict_json(exc.metadata)
            return None
    except Exception as exc:  # noqa: BLE001 - that is what the fuzzer looks for
        crashes.append(Crash(entry, f"{type(exc).__name__}: {exc}"[:300], traceback.format_exc()))
        return None


def origin(trace: str) -> str:
    """Where an exception was raised, as `file:line in function`, and through which of our frames."""
    frames = [line.strip()[5:] for line in trace.splitlines() if line.strip().startswith('File "')]
    ours = [f for f in frames if "/apercu/" in f and "/tests/" not in f]
    where = [_frame(frames[-1])] if frames else ["?"]
    if ours and ours[-1] != frames[-1]:
        where.append(f"via {_frame(ours[-1])}")
    return " ".join(where)


def _frame(line: str) -> str:
    path, _, rest = line.strip('"').partition('", line ')
    return f"{Path(path).name}:{rest.replace(', in ', ' in ')}"



# --- editors: named, deterministic mutations (for regressions and bombs) ------------------------------------

TIFF_FIELDS = {"tag": (0, 2), "type": (2, 2), "count": (4, 4), "value": (8, 4)}


def tiff_pages(data: bytes | bytearray) -> list[int]:
    """Positions of the IFDs of a TIFF file's page chain (not the sub-IFDs)."""
    order = "<" if data[:2] == b"II" else ">"
    pages: list[int] = []
    offset = get(data, 4, 4, order)
    while 8 <= offset < len(data) and offset not in pages and len(pages) < 64:
        pages.append(offset)
        offset = get(data, offset + 2 + 12 * get(data, offset, 2, order), 4, order)
    return pages


def set_tiff_fields(data: bytearray, page: int, tag: int, /, **fields: int) -> None:
    """Set fields (tag, type, count, value) of the entry for `tag` in the page's IFD."""
    order = "<" if data[:2] == b"II" else ">"
    ifd = tiff_pages(data)[page]
    entries = (ifd + 2 + 12 * i for i in range(get(data, ifd, 2, order)))
    entry = next(pos for pos in entries if get(data, pos, 2, order) == tag)
    for name, value in fields.items():
        offset, size = TIFF_FIELDS[name]
        put(data, entry + offset, size, value, order)


def set_png_size(data: bytearray, width: int, height: int) -> None:
    put(data, 16, 4, width)
    put(data, 20, 4, height)
    fix_png_crcs(data)


def declaring(fmt: str, side: int) -> Callable[[bytearray], object]:
    """An edit declaring a side x side canvas in a file of that format."""
    return lambda data: HUGE[fmt](data, side)


def edited(base: str, edit: Callable[[bytearray], object]) -> Callable[[], bytes]:
    """A builder: the generated base image with one edit applied."""

    def build() -> bytes:
        data = bytearray(generated_bases()[base])
        edit(data)
        return bytes(data)

    return build


# --- bombs: small files that ask for a lot (tests/test_imaging.py, bench/fuzz.py --memory) ------------------


@dataclass(frozen=True)
class Bomb:
    build: Callable[[], bytes]
    expect: str  # a regular expression the failure message or one of the warnings matches


def png_with_chunks(before: tuple[bytes, ...] = (), after: tuple[bytes, ...] = ()) -> bytes:
    """A small PNG with extra chunks before its first IDAT (Pillow reads those on open) and after its last."""
    data = images.encode(images.gradient((64, 48)), "PNG")
    idat, iend = data.index(b"IDAT") - 4, data.rindex(b"IEND") - 4
    return data[:idat] + b"".join(before) + data[idat:iend] + b"".join(after) + data[iend:]


def text_chunks(count: int, size: int) -> tuple[bytes, ...]:
    """`count` zTXt chunks that each inflate to `size` bytes."""
    return tuple(png_chunk(b"zTXt", b"Text%d\x00\x00" % i + zlib_bomb(size)) for i in range(count))


def xmp_in_tiff(packet: bytes) -> Callable[[], bytes]:
    return lambda: images.encode(images.gradient((40, 30)), "TIFF", tiffinfo={700: packet})


def deep_xmp(levels: int) -> bytes:
    body = b"<a>" * levels + b"</a>" * levels
    return images.XMP_PACKET.replace(b"<xmp:Rating>", body + b"<xmp:Rating>")


def _huge_strip(data: bytearray) -> None:
    """10000x10000 RGB (the default pixel limit) in one strip declared 300 MB long, in a file of 4 KiB."""
    set_tiff_fields(data, 0, 256, type=4, value=10_000)
    set_tiff_fields(data, 0, 257, type=4, value=10_000)
    set_tiff_fields(data, 0, 278, type=4, value=10_000)
    set_tiff_fields(data, 0, 279, type=4, value=300_000_000)


OVER_LIMIT = r"^image is \d+x\d+ = \d+ pixels, more than the limit of 100000000$"
PILLOW_BOMB = r"^image rejected as a decompression bomb: Image size \(\d+ pixels\) exceeds limit"
BOMBS = {
    # Declared canvases: over our limit (100 M pixels), and over Pillow's own (2 x 89 M), refused from the header.
    **{f"{fmt} declaring 12000x12000": Bomb(edited(base, declaring(fmt, 12_000)), OVER_LIMIT)
       for fmt, base in (("PNG", "png-rich"), ("JPEG", "jpeg-rich"), ("TIFF", "tiff-rich"), ("GIF", "gif-animated"),
                         ("BMP", "bmp-24"), ("TGA", "tga-rle"), ("WEBP", "webp-animated"))},
    "PNG declaring 100000x100000": Bomb(edited("png-rich", lambda d: set_png_size(d, HUGE_SIDE, HUGE_SIDE)),
                                        PILLOW_BOMB),
    "TIFF with one 300 MB strip": Bomb(edited("tiff-lzw", _huge_strip), r"^image data is truncated: its strips end"),
    # zlib bombs in PNG chunks: Pillow refuses those it reads on open, our walker drops those after the pixels.
    "PNG zTXt of 64 MiB before the pixels": Bomb(
        lambda: png_with_chunks(before=text_chunks(1, 64 * MIB)), r"Decompressed data too large"),
    "PNG zTXt of 64 MiB after the pixels": Bomb(
        lambda: png_with_chunks(after=text_chunks(1, 64 * MIB)), r"^PNG zTXt chunk unreadable: text larger than"),
    "PNG iTXt XMP of 64 MiB after the pixels": Bomb(
        lambda: png_with_chunks(after=(png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00"
                                                 + zlib_bomb(64 * MIB)),)), r"^PNG iTXt chunk unreadable"),
    "PNG iCCP of 64 MiB": Bomb(
        lambda: png_with_chunks(before=(png_chunk(b"iCCP", b"icc\x00\x00" + zlib_bomb(64 * MIB)),)),
        r"Decompressed data too large"),
    "PNG 40 zTXt of 1 MiB before the pixels": Bomb(
        lambda: png_with_chunks(before=text_chunks(40, MIB - 64)), r"Too much memory used in text chunks"),
    "PNG 40 zTXt of 1 MiB after the pixels": Bomb(
        lambda: png_with_chunks(after=text_chunks(40, MIB - 64)), r"^PNG text chunks beyond \d+ bytes in total"),
    # XMP: too large, or nested too deep, to be worth a tree.
    "TIFF XMP of 2 MiB": Bomb(xmp_in_tiff(b"<!--" + b"-" * 2 * MIB + b"-->" + images.XMP_PACKET),
                              r"^XMP unreadable: .* larger than"),
    "TIFF XMP nested 100000 levels": Bomb(xmp_in_tiff(deep_xmp(100_000)), r"^XMP unreadable: .* deeper than 64"),
}


def _blank(mode: str, fmt: str, **params: object) -> Callable[[], bytes]:
    """A 10000x10000 (100 M pixels, the default limit) image of one colour: compresses to almost nothing."""
    return lambda: images.encode(Image.new(mode, (10_000, 10_000)), fmt, **params)


def _photo() -> bytes:
    """12 megapixels of noise: as hard on the JPEG decoder as a real photo, and larger on disk (~7 MB)."""
    return images.encode(Image.effect_noise((4000, 3000), 60).convert("RGB"), "JPEG", quality=92)


# The worst inputs within the default limit (slow to build: bench/fuzz.py --memory only).
LARGE: dict[str, Callable[[], bytes]] = {
    "JPEG 12 MP photo (4000x3000)": _photo,
    "PNG 10000x10000": _blank("RGB", "PNG", compress_level=9),
    "PNG 10000x10000 16-bit grey": _blank("I;16", "PNG", compress_level=9),
    "GIF 10000x10000": _blank("P", "GIF"),
    "WEBP lossless 10000x10000": _blank("RGB", "WEBP", lossless=True),
    "TIFF deflate 10000x10000": _blank("RGB", "TIFF", compression="tiff_adobe_deflate"),
    "BMP 10000x10000 8-bit": _blank("P", "BMP"),
    # Small files declaring a canvas at the limit: the fuzzer's slowest cases at the production limit.
    **{f"{fmt} of a few KB declaring 9999x9999": edited(base, declaring(fmt, 9_999))
       for fmt, base in (("WEBP", "webp-animated"), ("GIF", "gif-animated"), ("BMP", "bmp-24"), ("PNG", "png-rich"),
                         ("TIFF", "tiff-lzw"), ("TGA", "tga-rle"))},
}


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss: int  # bytes, the whole process
    growth: int  # bytes above the process's size before the call
    outcome: str  # "processed (engine)" or the failure message


def measure(data: bytes, options: Options = PRODUCTION) -> Measurement:
    """analyse(data) in a fresh process (forked from a server that has imported the imaging code but run
    nothing): wall time, peak RSS by getrusage, and how it ended."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    with context.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_measured, (data, options))


def _measured(data: bytes, options: Options) -> Measurement:
    import os
    import resource

    before = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    started = time.perf_counter()
    try:
        outcome = f"processed ({analyse(data, options).thumbnail.engine})"
    except ProcessingFailed as exc:
        outcome = str(exc)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return Measurement(seconds, peak, peak - before, outcome)
