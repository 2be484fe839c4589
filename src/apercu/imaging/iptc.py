"""The IPTC block: IPTC-IIM datasets (JPEG APP13, TIFF tag 33723) under ExifTool's names.

Repeatable datasets (Keywords, By-line, ...) are always arrays, even with one value; text is UTF-8 when the
record says so (1:90) or when it decodes as UTF-8, Latin-1 otherwise; dates become ISO 8601.
"""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageFile, IptcImagePlugin

NAMES = {
    0: "ApplicationRecordVersion", 3: "ObjectTypeReference", 4: "ObjectAttributeReference", 5: "ObjectName",
    7: "EditStatus", 10: "Urgency", 12: "SubjectReference", 15: "Category", 20: "SupplementalCategories",
    22: "FixtureIdentifier", 25: "Keywords", 26: "ContentLocationCode", 27: "ContentLocationName",
    30: "ReleaseDate", 35: "ReleaseTime", 37: "ExpirationDate", 38: "ExpirationTime",
    40: "SpecialInstructions", 42: "ActionAdvised", 45: "ReferenceService", 47: "ReferenceDate",
    50: "ReferenceNumber", 55: "DateCreated", 60: "TimeCreated", 62: "DigitalCreationDate",
    63: "DigitalCreationTime", 65: "OriginatingProgram", 70: "ProgramVersion", 75: "ObjectCycle",
    80: "By-line", 85: "By-lineTitle", 90: "City", 92: "Sub-location", 95: "Province-State",
    100: "Country-PrimaryLocationCode", 101: "Country-PrimaryLocationName",
    103: "OriginalTransmissionReference", 105: "Headline", 110: "Credit", 115: "Source",
    116: "CopyrightNotice", 118: "Contact", 120: "Caption-Abstract", 121: "LocalCaption",
    122: "Writer-Editor", 130: "ImageType", 131: "ImageOrientation", 135: "LanguageIdentifier",
}
ENVELOPE_NAMES = {90: "CodedCharacterSet"}
REPEATABLE = {
    "SubjectReference", "SupplementalCategories", "Keywords", "ContentLocationCode", "ContentLocationName",
    "ReferenceService", "ReferenceDate", "ReferenceNumber", "By-line", "By-lineTitle", "Contact", "Writer-Editor",
}
DATES = {"ReleaseDate", "ExpirationDate", "ReferenceDate", "DateCreated", "DigitalCreationDate"}
UTF8_MARKER = b"\x1b%G"


def read_iptc(img: Image.Image) -> dict[str, Any]:
    """Named IPTC application-record fields of a JPEG or TIFF; empty when there are none."""
    if not isinstance(img, ImageFile.ImageFile):
        return {}
    info = IptcImagePlugin.getiptcinfo(img) or {}
    utf8 = _as_list(info.get((1, 90)))[:1] == [UTF8_MARKER]
    result: dict[str, Any] = {}
    for (record, dataset), raw in sorted(info.items()):
        name = NAMES.get(dataset) if record == 2 else ENVELOPE_NAMES.get(dataset) if record == 1 else None
        if name is None:
            continue
        values = [_value(name, v, utf8) for v in _as_list(raw)]
        result[name] = values if name in REPEATABLE else values[0]
    return result


def _as_list(raw: Any) -> list[bytes]:
    return list(raw) if isinstance(raw, list) else [raw]


def _value(name: str, raw: bytes, utf8: bool) -> Any:
    if name == "ApplicationRecordVersion" and len(raw) <= 2:
        return int.from_bytes(raw, "big")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1") if not utf8 else raw.decode("utf-8", errors="replace")
    text = text.strip("\x00 ")
    if name in DATES and len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text
