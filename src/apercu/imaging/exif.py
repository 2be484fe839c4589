"""EXIF as a flat JSON object: tag name -> JSON value, from IFD0, the Exif IFD, the Interop IFD and GPS.

Cameras write EXIF carelessly (zero denominators, trailing NULs, undeclared binary) and hostile files write it
on purpose. Every value therefore goes through `to_json`, which only ever yields what `json.dumps(...,
allow_nan=False)` accepts; anything unreadable is reported as a warning instead of failing the image.
"""

from __future__ import annotations

import math
import re
from typing import Any

from PIL import ExifTags, Image, TiffImagePlugin

POINTER_TAGS = {int(ExifTags.IFD.Exif), int(ExifTags.IFD.GPSInfo), int(ExifTags.IFD.Interop), 0x014A}
INTEROP_TAGS = {
    0x0001: "InteropIndex",
    0x0002: "InteropVersion",
    0x1000: "RelatedImageFileFormat",
    0x1001: "RelatedImageWidth",
    0x1002: "RelatedImageHeight",
}
SUB_IFDS = (
    (ExifTags.IFD.Exif, ExifTags.TAGS),
    (ExifTags.IFD.Interop, INTEROP_TAGS),
    (ExifTags.IFD.GPSInfo, ExifTags.GPSTAGS),
)
EXIF_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(.*)$")
USER_COMMENT_CHARSETS = {b"ASCII\x00\x00\x00": "ascii", b"UNICODE\x00": "utf-16", b"JIS\x00\x00\x00\x00\x00": "shift_jis"}


def read_exif(exif: Image.Exif) -> tuple[dict[str, Any], list[str]]:
    """Flatten an Exif object into {name: value}, with a warning for each IFD that could not be read."""
    result: dict[str, Any] = {}
    warnings: list[str] = []
    _merge(result, exif.items(), ExifTags.TAGS)
    for ifd, names in SUB_IFDS:
        try:
            entries = exif.get_ifd(ifd).items()
        except Exception as exc:  # noqa: BLE001 - a broken sub-IFD must not cost the rest
            warnings.append(f"EXIF {ExifTags.IFD(ifd).name} IFD unreadable: {exc}")
            continue
        _merge(result, entries, names)
    return result, warnings


def _merge(result: dict[str, Any], entries: Any, names: dict[int, str]) -> None:
    for tag, value in entries:
        if tag in POINTER_TAGS and names is ExifTags.TAGS:
            continue
        name = names.get(tag) or f"0x{tag:04x}"
        converted = to_json(value, name)
        if converted is not None:
            result.setdefault(name, converted)


def to_json(value: Any, name: str = "") -> Any:
    """A JSON-safe rendering of one EXIF value; None when it carries nothing usable."""
    if isinstance(value, TiffImagePlugin.IFDRational):
        if value.denominator == 0:
            return None
        return _finite(float(value.numerator) / float(value.denominator))
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, str):
        return _text(value, name)
    if isinstance(value, bytes):
        return _bytes(value, name)
    if isinstance(value, (tuple, list)):
        items = [to_json(v, name) for v in value]
        return items[0] if len(items) == 1 else items
    return None


def _finite(number: float) -> float | None:
    return number if math.isfinite(number) else None


def _text(value: str, name: str) -> str | None:
    text = value.replace("\x00", " ").strip()
    if not text:
        return None
    match = EXIF_DATE.match(text)
    if match and name.startswith(("DateTime", "GPSDate", "ModifyDate", "CreateDate")):
        y, mo, d, h, mi, s, rest = match.groups()
        return f"{y}-{mo}-{d}T{h}:{mi}:{s}{rest.strip()}"
    return text


def _bytes(value: bytes, name: str) -> Any:
    if name == "UserComment":
        charset = USER_COMMENT_CHARSETS.get(value[:8])
        if charset:
            return _text(value[8:].decode(charset, errors="replace"), name)
        if value[:8] == b"\x00" * 8:
            return _text(value[8:].decode("latin-1"), name)
    stripped = value.rstrip(b"\x00")
    if stripped and all(32 <= b < 127 or b in (9, 10, 13) for b in stripped):
        return _text(stripped.decode("ascii"), name)
    return {"bytes": len(value)}
