"""`metadata.makernotes` (APERCU_EXIFTOOL=1): the camera maker's private EXIF block, decoded by ExifTool.

Maker notes are undocumented layouts, one per maker and often per model; ExifTool is the reference decoder for
hundreds of them and nothing in Python comes close, so we ask it (see `exiftool`: one long-lived process,
bounded in time and size). It runs from `analyse`, inside the worker's imaging child, under the same time and
memory limits as the rest of imaging (exiftool inherits the memory limit); a file that hangs or kills it
costs this block and leaves a warning, never the image.

The block is `{group: {tag: value}}`: ExifTool's family-1 groups within its family-0 `MakerNotes` group
(`Canon`, `CanonCustom`, `Nikon`, `Apple`, `FujiFilm`...), its tag names, and the values `exiftool -n` gives
(no print conversion, like the `exif` block, and like the corpus readings the fidelity tests compare with),
typed as the `exif` block types them: numbers (ExifTool's JSON quotes long ones), arrays for space-separated
numbers, ISO 8601 dates, trimmed text, `{"bytes": N}` for binary data and for any value over MAX_VALUE bytes.
Without maker notes there is no key at all.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import re
import threading
from typing import Any

from apercu.imaging.exif import iso_date
from apercu.imaging.exiftool import ExifTool, ExifToolError, ExifToolMissing

log = logging.getLogger(__name__)

# Formats whose EXIF can hold a MakerNote; only files that have EXIF are asked about.
FORMATS = frozenset({"JPEG", "TIFF", "HEIF", "AVIF", "PNG", "WEBP"})
ARGUMENTS = ("-json", "-G1", "-n", "-MakerNotes:all")
TIMEOUT = 10.0
MAX_VALUE = 4096  # bytes of one value's text; larger ones become {"bytes": N}
MAX_NAME = 128
MISSING = "maker notes not read: exiftool is not installed"
NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")  # as ExifTool's JSON writes one, any length
BINARY = re.compile(r"\(Binary data (\d+) bytes")
DATE = re.compile(r"\d{4}:\d{2}:\d{2} \d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?")

_lock = threading.Lock()
_client: ExifTool | None = None
_told_missing = False


def add(facts: dict[str, Any], data: bytes, timeout: float, warnings: list[str]) -> None:
    """Put the maker notes into `facts` when the file can have some (a format that carries them, with EXIF)."""
    if facts.get("format") in FORMATS and facts.get("exif"):
        notes = read(data, timeout, warnings)
        if notes:
            facts["makernotes"] = notes


def read(data: bytes, timeout: float = TIMEOUT, warnings: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The maker notes of one file; {} when it has none or they could not be read (then a line in `warnings`)."""
    warnings = [] if warnings is None else warnings
    try:
        with _lock:
            raw = client().execute(data, timeout)
    except ExifToolMissing:
        _tell_missing()
        warnings.append(MISSING)
        return {}
    except ExifToolError as exc:
        warnings.append(f"maker notes unreadable: {exc}")
        return {}
    try:
        answer = json.loads(raw.decode("utf-8", errors="replace")) if raw.strip() else []
    except (ValueError, RecursionError):
        warnings.append("maker notes unreadable: exiftool's answer is not JSON")
        return {}
    first = answer[0] if isinstance(answer, list) and answer else None
    return grouped(first) if isinstance(first, dict) else {}


def grouped(tags: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`{"Canon:MacroMode": 2, ...}` (one file's `exiftool -j -G1`) as `{"Canon": {"MacroMode": 2}}`, typed."""
    notes: dict[str, dict[str, Any]] = {}
    for key, value in tags.items():
        group, _, name = key.partition(":")
        if not name or len(key) > MAX_NAME:
            continue  # SourceFile, and names no tag table has
        converted = bounded(value)
        if converted is not None:
            notes.setdefault(group, {})[name] = converted
    return notes


def bounded(value: Any) -> Any:
    """`typed(value)`, or `{"bytes": N}` when its text is longer than MAX_VALUE bytes."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    size = len(text.encode("utf-8", errors="replace"))
    return {"bytes": size} if size > MAX_VALUE else typed(value)


def typed(value: Any) -> Any:
    """One value of `exiftool -j -n` as the `exif` block would type it; None when nothing usable is there."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [typed(item) for item in value]
    if not isinstance(value, str):
        return None  # (structures need -struct, which we do not ask for)
    text = value.strip()
    if binary := BINARY.match(text):
        return {"bytes": int(binary.group(1))}
    if NUMBER.fullmatch(text):
        number = _number(text)
        return text if number is None else number
    parts = text.split()
    if len(parts) > 1 and all(NUMBER.fullmatch(part) for part in parts):
        numbers = [_number(part) for part in parts]
        return numbers if None not in numbers else text
    if DATE.fullmatch(text):
        return iso_date(text)
    return text


def _number(text: str) -> int | float | None:
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    number = float(text)
    return number if math.isfinite(number) else None


def client() -> ExifTool:
    """This process's exiftool client (its process starts on the first file)."""
    global _client
    if _client is None:
        _client = ExifTool(ARGUMENTS)
    return _client


def running() -> bool:
    """Whether this process has an exiftool running (tests: the setting off must start none)."""
    return _client is not None and _client.process_id is not None


def shutdown() -> None:
    """Stop this process's exiftool, if any; the next file starts a new one."""
    global _client
    with _lock:
        if _client is not None:
            _client.close()
            _client = None


atexit.register(shutdown)


def _tell_missing() -> None:
    global _told_missing
    if not _told_missing:
        _told_missing = True
        log.warning("APERCU_EXIFTOOL is on but exiftool is not on PATH: images get no maker notes "
                    "(Debian: apt-get install libimage-exiftool-perl)")
