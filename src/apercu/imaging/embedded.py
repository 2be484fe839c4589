"""The metadata blocks a file carries besides its pixels: EXIF (+ decoded GPS), XMP, IPTC, ICC and text.

Each block is read on its own, so that a malformed one costs only itself: its failure becomes a line under
`warnings` and every other block, the basic facts and the thumbnail still come out.
"""

from __future__ import annotations

from typing import Any, Callable

from PIL import Image

from apercu.imaging import exif as exif_json
from apercu.imaging.gps import read_gps
from apercu.imaging.icc import read_icc
from apercu.imaging.iptc import read_iptc
from apercu.imaging.xmp import read_xmp

XMP_TIFF_TAG = 700
PNG_XMP_KEY = "XML:com.adobe.xmp"
MAX_TEXT = 64 * 1024
# PNG text chunks that hold other blocks (parsed into those) rather than text for people.
NOT_TEXT = {PNG_XMP_KEY, "Raw profile type exif", "Raw profile type APP1", "Raw profile type iptc", "icc"}


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def guarded(what: str, warnings: list[str], read: Callable[[], Any]) -> Any:
    """read(), or None with a warning: one unreadable block must not cost the others."""
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - malformed metadata is a property of the file
        warnings.append(f"{what} unreadable: {describe(exc)}")
        return None


def read_exif(img: Image.Image, warnings: list[str]) -> tuple[Image.Exif | None, dict[str, Any]]:
    """Pillow's Exif object (for orientation) and its JSON rendering under ExifTool names."""
    exif = guarded("EXIF", warnings, img.getexif)
    if not exif:
        return None, {}
    tags, exif_warnings = exif_json.read_exif(exif)
    warnings.extend(exif_warnings)
    original = img.info.get("original_orientation")  # pillow-heif rewrites the tag to 1 once applied
    if isinstance(original, int) and "Orientation" in tags:
        tags["Orientation"] = original
    return exif, tags


def blocks(img: Image.Image, tags: dict[str, Any], warnings: list[str], decoded: bool) -> dict[str, Any]:
    """Every block the image has, keyed as in the API (`exif`, `gps`, `xmp`, `iptc`, `icc`, `text`).

    PNG text is read only once the image is decoded (asking Pillow for it earlier decodes the pixels)."""
    found: dict[str, Any] = {}
    if tags:
        found["exif"] = tags
        gps = read_gps(tags, warnings)
        if gps:
            found["gps"] = gps
    packet = _xmp_packet(img)
    if packet:
        found["xmp"] = guarded("XMP", warnings, lambda: read_xmp(packet))
    if img.format in ("JPEG", "MPO", "TIFF"):
        found["iptc"] = guarded("IPTC", warnings, lambda: read_iptc(img))
    profile = img.info.get("icc_profile")
    if isinstance(profile, bytes) and profile:
        found["icc"] = guarded("ICC profile", warnings, lambda: read_icc(profile))
    found["text"] = guarded("text", warnings, lambda: _text(img, decoded))
    return {k: v for k, v in found.items() if v}


def _xmp_packet(img: Image.Image) -> bytes | str | None:
    packet = img.info.get("xmp") or img.info.get(PNG_XMP_KEY)
    if not packet and img.format == "TIFF":
        packet = getattr(img, "tag_v2", {}).get(XMP_TIFF_TAG)
    if isinstance(packet, tuple):  # some TIFF writers store it as BYTE values
        packet = bytes(packet)
    return packet or None


def _text(img: Image.Image, decoded: bool) -> dict[str, str]:
    """Human text: PNG tEXt/iTXt/zTXt chunks, JPEG and GIF comments."""
    text: dict[str, str] = {}
    if img.format == "PNG" and decoded:
        for key, value in getattr(img, "text", {}).items():
            if key not in NOT_TEXT and isinstance(value, str):
                text[key] = value[:MAX_TEXT]
    comment = img.info.get("comment")
    if isinstance(comment, bytes):
        comment = exif_json.decode_text(comment)
    if isinstance(comment, str) and comment.strip("\x00 "):
        text["Comment"] = comment.strip("\x00 ")[:MAX_TEXT]
    return text
