"""EXIF as a flat JSON object under ExifTool's tag names: IFD0, the Exif IFD, the Interop IFD and GPS.

Cameras write EXIF carelessly (zero denominators, trailing NULs, undeclared binary) and hostile files write it
on purpose. Every value therefore goes through `convert`, which only ever yields what `json.dumps(...,
allow_nan=False)` accepts; an IFD that cannot be read is reported as a warning instead of failing the image.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from PIL import ExifTags, Image, TiffImagePlugin

from apercu.imaging import exif_tags as T

EXIF_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?(.*)$")
CHARSETS = {b"ASCII\x00\x00\x00": "ascii", b"UNICODE\x00": "utf-16", b"JIS\x00\x00\x00\x00\x00": "shift_jis"}
SMALL_BLOB = 4
MAX_NAMED = 10  # unreadable entries named in one warning
SUB_IFDS = (
    (ExifTags.IFD.Exif, T.NAMES),
    (ExifTags.IFD.Interop, T.INTEROP_NAMES),
    (ExifTags.IFD.GPSInfo, T.GPS_NAMES),
)


def read_exif(exif: Image.Exif) -> tuple[dict[str, Any], list[str]]:
    """Flatten an Exif object into {ExifTool name: value}, with a warning for each IFD (or entry) that could not
    be read: Pillow decodes entries lazily, so a malformed one raises only when its value is asked for."""
    result: dict[str, Any] = {}
    warnings: list[str] = []
    _merge(result, _entries(exif, "IFD0", warnings), T.NAMES)
    for ifd, names in SUB_IFDS:
        name = ExifTags.IFD(ifd).name
        try:
            directory = exif.get_ifd(ifd)
        except Exception as exc:  # noqa: BLE001 - a broken sub-IFD must not cost the rest
            warnings.append(f"EXIF {name} IFD unreadable: {type(exc).__name__}: {exc}")
            continue
        _merge(result, _entries(directory, name, warnings), names)
    _attach_offsets(result)
    return result, warnings


def _entries(directory: Mapping[int, Any], ifd: str, warnings: list[str]) -> list[tuple[int, Any]]:
    """(tag, value) of every entry whose value Pillow can decode; the others are named in one warning."""
    entries: list[tuple[int, Any]] = []
    unreadable: list[str] = []
    for tag in sorted(directory):
        value = tag_value(directory, tag, unreadable)
        if value is not None:
            entries.append((tag, value))
    if unreadable:
        warnings.append(f"EXIF {ifd} entries unreadable: {', '.join(unreadable[:MAX_NAMED])}")
    return entries


def tag_value(directory: Mapping[int, Any], tag: int, unreadable: list[str] | None = None) -> Any:
    """One entry's value, or None when it is absent or cannot be decoded (then named in `unreadable`)."""
    if tag not in directory:
        return None
    try:
        return directory[tag]
    except Exception as exc:  # noqa: BLE001 - Pillow's lazy decoding raises KeyError, IndexError, ...
        if unreadable is not None:
            unreadable.append(f"0x{tag:04x} ({type(exc).__name__})")
        return None


def _merge(result: dict[str, Any], entries: Iterable[tuple[int, Any]], names: dict[int, str]) -> None:
    for tag, value in entries:
        if names is T.NAMES and tag in T.NOT_VALUES:
            continue
        name = names.get(tag) or f"0x{tag:04x}"
        try:
            converted = convert(name, value)
        except (ValueError, TypeError, OverflowError, ZeroDivisionError):
            converted = None
        if converted is not None and name not in result:
            result[name] = converted


def _attach_offsets(result: dict[str, Any]) -> None:
    """Give each date the UTC offset its OffsetTime* companion records (ISO 8601 with offset)."""
    for date_tag, offset_tag in T.DATE_TAGS.items():
        date, offset = result.get(date_tag), result.get(offset_tag) if offset_tag else None
        if isinstance(date, str) and isinstance(offset, str) and re.fullmatch(r"[+-]\d{2}:\d{2}", offset):
            if len(date) == 19:
                result[date_tag] = date + offset


def convert(name: str, value: Any) -> Any:
    """One EXIF value as ExifTool -n gives it, typed for JSON; None when nothing usable is there."""
    if name in T.UCS2_TAGS and isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        value = bytes(v & 0xFF for v in value)
    if isinstance(value, bytes):
        return _undefined(name, value)
    if name in T.DMS_TAGS and isinstance(value, tuple) and len(value) == 3:
        d, m, s = (_number(v) for v in value)
        return None if None in (d, m, s) else d + m / 60 + s / 3600  # type: ignore[operator]
    if name == "GPSTimeStamp" and isinstance(value, tuple) and len(value) == 3:
        return _time_of_day(*(_number(v) for v in value))
    converted = to_json(value, name)
    if isinstance(converted, (int, float)) and not isinstance(converted, bool):
        return _apex(name, converted)
    return converted


def _apex(name: str, value: float) -> float | None:
    try:
        if name in T.APEX_TIME_TAGS:
            return _finite(2.0 ** -value) if abs(value) < 100 else 0
        if name in T.APEX_APERTURE_TAGS:
            return _finite(2.0 ** (value / 2))
    except OverflowError:
        return None
    return value


def _undefined(name: str, value: bytes) -> Any:
    if name in T.VERSION_TAGS:
        return _text(value.decode("latin-1"), name)
    if name in T.BYTE_LIST_TAGS:
        return list(value)
    if name in T.BYTE_INT_TAGS:
        return value[0] if value else None
    if name in T.CHARSET_TEXT_TAGS:
        return _charset_text(value, name)
    if name in T.UCS2_TAGS:
        return _text(value.decode("utf-16-le", errors="replace"), name)
    stripped = value.rstrip(b"\x00")
    if stripped and all(32 <= b < 127 or b in (9, 10, 13) for b in stripped):
        return _text(stripped.decode("ascii"), name)
    if 0 < len(value) <= SMALL_BLOB:  # a few bytes are numbers to ExifTool, not a blob
        return value[0] if len(value) == 1 else list(value)
    return {"bytes": len(value)}


def _charset_text(value: bytes, name: str) -> str | None:
    """EXIF's undefined text: an 8-byte character code, then the text (ExifTool decodes it the same way)."""
    charset = CHARSETS.get(value[:8])
    body = value[8:] if charset or value[:8] == b"\x00" * 8 else value
    if charset == "utf-16":
        return _text(body.decode("utf-16-be" if body[:1] == b"\x00" else "utf-16-le", errors="replace"), name)
    if charset == "shift_jis":
        return _text(body.decode("shift_jis", errors="replace"), name)
    return _text(decode_text(body), name)


def to_json(value: Any, name: str = "") -> Any:
    """A JSON-safe rendering of one value; None when it carries nothing usable."""
    if isinstance(value, TiffImagePlugin.IFDRational):
        return _number(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, str):
        return _text(value, name)
    if isinstance(value, bytes):
        return _undefined(name, value)
    if isinstance(value, (tuple, list)):
        items = [to_json(v, name) for v in value]
        return items[0] if len(items) == 1 else items
    return None


def _number(value: Any) -> float | int | None:
    if isinstance(value, TiffImagePlugin.IFDRational):
        if value.denominator == 0:
            return None
        return _finite(float(value.numerator) / float(value.denominator))
    if isinstance(value, (int, float)):
        return _finite(float(value)) if isinstance(value, float) else value
    return None


def _finite(number: float) -> float | None:
    return number if math.isfinite(number) else None


def _time_of_day(h: float | None, m: float | None, s: float | None) -> str | None:
    if None in (h, m, s):
        return None
    seconds = f"{s:09.6f}".rstrip("0").rstrip(".") if s != int(s) else f"{int(s):02d}"  # type: ignore[arg-type]
    return f"{int(h):02d}:{int(m):02d}:{seconds}"  # type: ignore[arg-type]


def decode_text(raw: bytes) -> str:
    """UTF-8 when the bytes are valid UTF-8, Latin-1 otherwise: what cameras and editors actually write."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _text(value: str, name: str) -> str:
    text = value.split("\x00", 1)[0]
    try:
        text = text.encode("latin-1").decode("utf-8")  # Pillow decodes ASCII tags as Latin-1
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    text = text.strip()
    if name in T.DATE_TAGS:
        return iso_date(text)
    return text


def iso_date(text: str) -> str:
    """EXIF's `YYYY:MM:DD HH:MM:SS` as ISO 8601 (`YYYY-MM-DDTHH:MM:SS`); anything else unchanged."""
    match = EXIF_DATE.match(text)
    if not match:
        return text
    y, mo, d, h, mi, s, rest = match.groups()
    if h is None:
        return f"{y}-{mo}-{d}{rest}"
    seconds = f":{s}" if s is not None else ""
    return f"{y}-{mo}-{d}T{h}:{mi}{seconds}{rest.strip()}"
