"""The GPS block: what a program wants from EXIF GPS tags, decoded once so that no client has to.

Signs come from the reference tags (S and W are negative, altitude reference 1 is below sea level), as in
ExifTool's Composite tags; values outside the globe are dropped with a warning rather than passed on.

`without_location` is the other direction, for a deployment that must not keep where a photo was taken
(APERCU_GPS=drop): every GPS fact, wherever in the metadata it sits, taken out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeGuard

SPEED_UNITS = {"K": "km/h", "M": "mph", "N": "knots"}


def read_gps(exif: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """Decoded GPS facts from ExifTool-named EXIF tags; empty when the image has no usable position."""
    gps: dict[str, Any] = {}
    latitude = _signed(exif.get("GPSLatitude"), exif.get("GPSLatitudeRef"), "S", 90.0, "latitude", warnings)
    longitude = _signed(exif.get("GPSLongitude"), exif.get("GPSLongitudeRef"), "W", 180.0, "longitude", warnings)
    if latitude is not None and longitude is not None:
        gps["latitude"], gps["longitude"] = latitude, longitude
    altitude = exif.get("GPSAltitude")
    if _is_number(altitude):
        gps["altitude"] = round(-altitude if exif.get("GPSAltitudeRef") == 1 else altitude, 3)
    timestamp = _timestamp(exif.get("GPSDateStamp"), exif.get("GPSTimeStamp"))
    if timestamp:
        gps["timestamp"] = timestamp
    if _is_number(exif.get("GPSSpeed")):
        gps["speed"] = exif["GPSSpeed"]
        gps["speed_unit"] = SPEED_UNITS.get(str(exif.get("GPSSpeedRef", "K")), "km/h")
    for key, tag in (("direction", "GPSImgDirection"), ("track", "GPSTrack")):
        if _is_number(exif.get(tag)):
            gps[key] = exif[tag]
            gps[f"{key}_ref"] = "magnetic" if exif.get(f"{tag}Ref") == "M" else "true"
    return gps


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _signed(value: Any, ref: Any, negative: str, limit: float, what: str, warnings: list[str]) -> float | None:
    if not _is_number(value):
        return None
    signed = -float(value) if str(ref or "").strip().upper().startswith(negative) else float(value)
    if abs(signed) > limit:
        warnings.append(f"GPS {what} {signed} is outside +-{limit:g}; ignored")
        return None
    return round(signed, 9)


def _timestamp(date: Any, time: Any) -> str | None:
    """ISO 8601 UTC from GPSDateStamp (already YYYY-MM-DD) and GPSTimeStamp (HH:MM:SS[.fff])."""
    if not isinstance(date, str) or not isinstance(time, str) or len(date) < 10:
        return None
    day = date[:10]
    if not (day[:4].isdigit() and day[5:7].isdigit() and day[8:10].isdigit()):
        return None
    return f"{day}T{time}Z"


# Where a location can sit in the metadata besides the `gps` block: XMP properties such as exif:GPSLatitude,
# Iptc4xmpExt:LocationCreatedGPSLatitude (a flattened structure) or drone-dji:GpsLongitude. IPTC-IIM has no
# coordinates (its location datasets are names and codes), and neither do ICC profiles.
XMP_LOCATION = re.compile(r"gps|latitude|longitude", re.IGNORECASE)
TEXT_LOCATION = XMP_LOCATION  # a comment or text chunk that mentions one is dropped whole
# TIFF and EXIF number their tags from 0x00FE on; only the GPS IFD (0x00-0x1F defined) and the Interop IFD use
# smaller numbers. An EXIF tag named by its hex id below this is therefore taken for a GPS tag and dropped.
FIRST_TIFF_TAG = 0x00FE
# Maker-note tags (ExifTool's CamelCase names) that say where: Pentax/Sony/Casio GPS tags, Panasonic's Country,
# State, City and Landmark, the world-time cities of several makers.
MAKER_LOCATION = re.compile(r"GPS|Latitude|Longitude|Altitude|Location|City|Country|Landmark|^State$")


def allowed_metadata(metadata: dict[str, Any], gps: str) -> dict[str, Any]:
    """The metadata as APERCU_GPS (`gps`: "keep" or "drop") allows it to be stored or shown: under "drop",
    without any location. The one place that decides it, for the worker (before storing) and the service
    (before answering: an image stored before the setting changed still has its location)."""
    return without_location(metadata) if gps == "drop" else metadata


def without_location(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata with every GPS fact removed, for APERCU_GPS=drop: the `gps` block, the EXIF GPS tags (and the
    GPSInfo pointer, should it appear), XMP location properties, location tags of the maker notes, and the
    warnings about GPS (which quote values).

    Pure: the argument is left as it is. See `allowed_metadata` for when it applies."""
    cleaned = {key: value for key, value in metadata.items() if key != "gps"}
    for block, is_location in (("exif", _exif_location), ("xmp", _xmp_location), ("text", _text_location)):
        tags = metadata.get(block)
        if isinstance(tags, dict):
            kept = {name: value for name, value in tags.items() if not is_location(name, value)}
            if kept:
                cleaned[block] = kept
            else:
                cleaned.pop(block)
    notes = metadata.get("makernotes")
    if isinstance(notes, dict):
        kept_notes = _without_maker_location(notes)
        if kept_notes:
            cleaned["makernotes"] = kept_notes
        else:
            cleaned.pop("makernotes")
    warnings = metadata.get("warnings")
    if isinstance(warnings, list):
        kept_warnings = [w for w in warnings if not (isinstance(w, str) and "GPS" in w)]
        if kept_warnings:
            cleaned["warnings"] = kept_warnings
        else:
            cleaned.pop("warnings")
    return cleaned


def _text_location(name: str, value: Any) -> bool:
    """A text chunk or comment that may hold a position: one that says so, or an embedded metadata profile
    (ImageMagick's hex-encoded "Raw profile type xmp/exif/iptc" chunks carry a whole XMP or EXIF block)."""
    return name.lower().startswith("raw profile type") or bool(TEXT_LOCATION.search(str(value)))


def _exif_location(name: str, _value: Any = None) -> bool:
    if name.startswith("GPS"):
        return True
    if name.startswith("0x"):
        try:
            return int(name, 16) < FIRST_TIFF_TAG
        except ValueError:
            return False
    return False


def _without_maker_location(notes: Mapping[str, Any]) -> dict[str, Any]:
    kept_groups = {}
    for group, tags in notes.items():
        if isinstance(tags, dict):
            kept = {name: value for name, value in tags.items() if not MAKER_LOCATION.search(name)}
            if kept:
                kept_groups[group] = kept
    return kept_groups


def _xmp_location(name: str, _value: Any = None) -> bool:
    return bool(XMP_LOCATION.search(name.rpartition(":")[2]))
