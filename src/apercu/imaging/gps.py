"""The GPS block: what a program wants from EXIF GPS tags, decoded once so that no client has to.

Signs come from the reference tags (S and W are negative, altitude reference 1 is below sea level), as in
ExifTool's Composite tags; values outside the globe are dropped with a warning rather than passed on.
"""

from __future__ import annotations

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
