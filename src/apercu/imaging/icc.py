"""The ICC block: what colour a profile describes, read from its header and its text tags.

Parsed by hand from the 128-byte header and the tag table (ICC.1:2022 section 7), which is all we need and
which keeps a malformed profile a matter of bounds checks rather than of a colour engine's error handling.
"""

from __future__ import annotations

import struct
from typing import Any

HEADER = 128
INTENTS = {0: "perceptual", 1: "relative colorimetric", 2: "saturation", 3: "absolute colorimetric"}


def read_icc(profile: bytes) -> dict[str, Any]:
    """Header facts and the description/copyright texts of an ICC profile; raises ValueError when malformed."""
    if len(profile) < HEADER or profile[36:40] != b"acsp":
        raise ValueError("not an ICC profile (no 'acsp' signature)")
    major, minor_fix = profile[8], profile[9]
    intent = struct.unpack(">I", profile[64:68])[0] & 0xFFFF
    icc: dict[str, Any] = {
        "version": f"{major}.{minor_fix >> 4}.{minor_fix & 0xF}",
        "device_class": _code(profile[12:16]),
        "color_space": _code(profile[16:20]),
        "connection_space": _code(profile[20:24]),
        "rendering_intent": intent,
        "rendering_intent_name": INTENTS.get(intent, "unknown"),
        "cmm": _code(profile[4:8]),
        "manufacturer": _code(profile[48:52]),
        "model": _code(profile[52:56]),
        "created": _date(profile[24:36]),
        "bytes": len(profile),
    }
    tags = _tag_table(profile)
    for key, signature in (("description", b"desc"), ("copyright", b"cprt")):
        if signature in tags:
            text = _text(profile, *tags[signature])
            if text:
                icc[key] = text
    return {k: v for k, v in icc.items() if v not in (None, "")}


def _code(raw: bytes) -> str:
    return raw.decode("latin-1").strip("\x00 ")


def _date(raw: bytes) -> str | None:
    y, mo, d, h, mi, s = struct.unpack(">6H", raw)
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"


def _tag_table(profile: bytes) -> dict[bytes, tuple[int, int]]:
    count = struct.unpack(">I", profile[HEADER : HEADER + 4])[0]
    tags = {}
    for i in range(min(count, 1000)):
        entry = profile[HEADER + 4 + 12 * i : HEADER + 16 + 12 * i]
        if len(entry) < 12:
            break
        signature, offset, size = struct.unpack(">4sII", entry)
        if offset + size <= len(profile):
            tags[signature] = (offset, size)
    return tags


def _text(profile: bytes, offset: int, size: int) -> str | None:
    """A text-bearing tag: v2 `desc` (textDescriptionType), `text`, or v4 `mluc` (first record)."""
    data = profile[offset : offset + size]
    kind = data[:4]
    if kind == b"desc" and len(data) >= 12:
        length = struct.unpack(">I", data[8:12])[0]
        return data[12 : 12 + length].split(b"\x00", 1)[0].decode("latin-1").strip()
    if kind == b"text":
        return data[8:].split(b"\x00", 1)[0].decode("latin-1").strip()
    if kind == b"mluc" and len(data) >= 28:
        records, record_size = struct.unpack(">II", data[8:16])
        if records < 1 or record_size < 12:
            return None
        length, start = struct.unpack(">II", data[20:28])
        return data[start : start + length].decode("utf-16-be", errors="replace").strip("\x00 ")
    return None
