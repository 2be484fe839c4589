"""The metadata blocks a file carries besides its pixels: EXIF (+ decoded GPS), XMP, IPTC, ICC and text.

Each block is read on its own, so that a malformed one costs only itself: its failure becomes a line under
`warnings` and every other block, the basic facts and the thumbnail still come out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image

from apercu.imaging import exif as exif_json
from apercu.imaging.gps import read_gps
from apercu.imaging.icc import read_icc
from apercu.imaging.iptc import read_iptc
from apercu.imaging.png_chunks import PngMetadata, read_chunks
from apercu.imaging.xmp import read_xmp

XMP_TIFF_TAG = 700
PNG_XMP_KEY = "XML:com.adobe.xmp"
MAX_TEXT = 64 * 1024
# PNG text chunks that hold other blocks (parsed into those) rather than text for people.
IMAGEMAGICK_EXIF = "Raw profile type exif"
NOT_TEXT = {PNG_XMP_KEY, IMAGEMAGICK_EXIF, "Raw profile type APP1", "Raw profile type iptc", "icc"}


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


def read(img: Image.Image, data: bytes, warnings: list[str]) -> tuple[Image.Exif | None, dict[str, Any]]:
    """Pillow's Exif object (for orientation) and every block, keyed as in the API (`exif`, `gps`, `xmp`,
    `iptc`, `icc`, `text`). Nothing here decodes pixels: PNG chunks are walked, not loaded."""
    png = read_chunks(data) if img.format == "PNG" else None
    if png is not None:
        warnings.extend(png.problems)
    exif = guarded("EXIF", warnings, lambda: _exif(img, png)) or None
    found: dict[str, Any] = {}
    if exif is not None:
        found["exif"] = guarded("EXIF", warnings, lambda: _exif_tags(img, exif, warnings))
    if found.get("exif"):
        found["gps"] = guarded("GPS", warnings, lambda: read_gps(found["exif"], warnings))
    packet = guarded("XMP", warnings, lambda: _xmp_packet(img, png))
    if packet:
        found["xmp"] = guarded("XMP", warnings, lambda: read_xmp(packet))
    if img.format in ("JPEG", "MPO", "TIFF"):
        found["iptc"] = guarded("IPTC", warnings, lambda: read_iptc(img))
    profile = img.info.get("icc_profile")
    if isinstance(profile, bytes) and profile:
        found["icc"] = guarded("ICC profile", warnings, lambda: read_icc(profile))
    found["text"] = guarded("text", warnings, lambda: _text(img, png))
    return exif, {k: v for k, v in found.items() if v}


def _exif_tags(img: Image.Image, exif: Image.Exif, warnings: list[str]) -> dict[str, Any]:
    tags, exif_warnings = exif_json.read_exif(exif)
    warnings.extend(exif_warnings)
    original = img.info.get("original_orientation")  # pillow-heif rewrites the tag to 1 once applied
    if isinstance(original, int) and "Orientation" in tags:
        tags["Orientation"] = original
    return tags


def exif_only(img: Image.Image, data: bytes) -> Image.Exif | None:
    """Just the Exif object, for a caller that needs the orientation and none of the other blocks."""
    png = read_chunks(data) if img.format == "PNG" else None
    return guarded("EXIF", [], lambda: _exif(img, png)) or None


def _exif(img: Image.Image, png: PngMetadata | None) -> Image.Exif | None:
    if png is None:
        return img.getexif()
    payload = png.exif or _imagemagick_exif(png.text.get(IMAGEMAGICK_EXIF, ""))
    if not payload:
        return None
    exif = Image.Exif()
    exif.load(payload)
    return exif


def _imagemagick_exif(raw: str) -> bytes | None:
    """ImageMagick's "Raw profile type exif" text chunk: a header line, a length, then hex."""
    lines = raw.strip().split("\n")
    if len(lines) < 3:
        return None
    return bytes.fromhex("".join(lines[2:]))


def _xmp_packet(img: Image.Image, png: PngMetadata | None) -> bytes | str | None:
    packet = img.info.get("xmp") or (png.text.get(PNG_XMP_KEY) if png else None)
    if not packet and img.format == "TIFF":
        packet = exif_json.tag_value(getattr(img, "tag_v2", {}), XMP_TIFF_TAG)
    if isinstance(packet, tuple):  # some TIFF writers store it as BYTE values
        packet = bytes(packet)
    return packet or None


def _text(img: Image.Image, png: PngMetadata | None) -> dict[str, str]:
    """Human text: PNG tEXt/iTXt/zTXt chunks, JPEG and GIF comments."""
    text = {k: v[:MAX_TEXT] for k, v in png.text.items() if k not in NOT_TEXT} if png else {}
    comment = img.info.get("comment")
    if isinstance(comment, bytes):
        comment = exif_json.decode_text(comment)
    if isinstance(comment, str) and comment.strip("\x00 "):
        text["Comment"] = comment.strip("\x00 ")[:MAX_TEXT]
    return text
