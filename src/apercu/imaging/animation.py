"""Frame durations of animated GIF, PNG (APNG) and WebP, read from the bytes.

Pillow knows a frame's duration only once it has moved to that frame, and moving to a GIF or APNG frame decodes
every frame before it (each is drawn over the last): timing a long animation that way decoded all of it, before
or after any pixel limit. The durations are in the blocks' headers, so they are read from there, in one walk
over the file that allocates nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from apercu.imaging.png_chunks import chunks


def frame_durations(fmt: str | None, data: bytes) -> list[int]:
    """Each frame's duration in milliseconds, as far as the file can be walked; [] for other formats."""
    reader = READERS.get(fmt or "")
    return reader(data) if reader else []


def _gif(data: bytes) -> list[int]:
    """The delay of the Graphic Control Extension before each image (10 ms units), 0 when it has none."""
    if len(data) < 13:
        return []
    pos = 13 + _colour_table_size(data[10])
    durations, delay = [], 0
    while pos + 1 < len(data):
        block = data[pos]
        if block == 0x21:  # extension: label, then data sub-blocks
            if data[pos + 1] == 0xF9 and pos + 6 <= len(data) and data[pos + 2] >= 4:
                delay = int.from_bytes(data[pos + 4 : pos + 6], "little") * 10
            pos = _after_sub_blocks(data, pos + 2)
        elif block == 0x2C and pos + 10 <= len(data):  # image: descriptor, colour table, LZW code size, data
            pos = _after_sub_blocks(data, pos + 10 + _colour_table_size(data[pos + 9]) + 1)
            durations.append(delay)
            delay = 0
        else:  # the trailer, or something that is not GIF any more
            break
    return durations


def _colour_table_size(flags: int) -> int:
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def _after_sub_blocks(data: bytes, pos: int) -> int:
    while pos < len(data) and data[pos]:
        pos += 1 + data[pos]
    return pos + 1


def _apng(data: bytes) -> list[int]:
    """delay_num / delay_den seconds of each fcTL chunk (a denominator of 0 means 100, as in the APNG spec)."""
    durations = []
    for _, body in chunks(data, (b"fcTL",)):
        if len(body) >= 24:
            numerator, denominator = int.from_bytes(body[20:22], "big"), int.from_bytes(body[22:24], "big")
            durations.append(int(numerator * 1000 / (denominator or 100)))
    return durations


def _webp(data: bytes) -> list[int]:
    """The 24-bit duration of each ANMF chunk (milliseconds)."""
    durations, pos = [], 12
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if kind == b"ANMF" and pos + 8 + 15 <= len(data):
            durations.append(int.from_bytes(data[pos + 8 + 12 : pos + 8 + 15], "little"))
        pos += 8 + size + (size & 1)
    return durations


READERS: dict[str, Callable[[bytes], list[int]]] = {"GIF": _gif, "PNG": _apng, "WEBP": _webp}
