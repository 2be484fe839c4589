"""The basic facts of an opened image, read from its header: what it is, how big, how it is stored.

Everything here works on an image that is opened but not yet decoded, so it costs no pixel work and comes
before the pixel limit is checked. Nothing here may decode: the caller counts frames (without moving the image
it decodes, see `analyse._frame_count`), and animation timing is read from the bytes (see `animation`).
"""

from __future__ import annotations

import math
from typing import Any

from PIL import Image

from apercu.imaging.animation import frame_durations
from apercu.imaging.exif import tag_value
from apercu.imaging.formats import format_of

ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
MODE_BITS = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}
GREY_MODES = {*MODE_BITS, "L", "LA", "La"}  # every mode with one colour channel
ORIENTATION_TAG = 0x0112
SWAPPING_ORIENTATIONS = {5, 6, 7, 8}


def orientation_of(img: Image.Image, exif: Image.Exif | None) -> int | None:
    """The EXIF orientation as written (1-8), or None when absent or out of range ("as stored").

    Read it before decoding: Pillow's TIFF plugin deletes the tag once it has applied it.
    pillow-heif applies a HEIF's rotation while decoding and rewrites the tag to 1, keeping the original in
    `info["original_orientation"]`; that original is what the file says, so that is what we report.
    """
    value = img.info.get("original_orientation")
    if value is None and exif is not None:
        value = tag_value(exif, ORIENTATION_TAG)
    if isinstance(value, int) and 1 <= value <= 8:
        return value
    return None


def decoder_applies_orientation(img: Image.Image) -> bool:
    """Whether the decoder rotates by itself: pillow-heif does, and so does Pillow's TIFF plugin, which then
    removes the tag. Both report the displayed size from the header on. Every other decoder leaves it to us."""
    return img.format == "TIFF" or "original_orientation" in img.info


def displayed_size(img: Image.Image, orientation: int | None) -> tuple[int, int]:
    """Width and height upright, as the image is shown (and as the catalog records them)."""
    width, height = img.size
    if decoder_applies_orientation(img):
        return width, height  # the decoder rotates: img.size is already the displayed size
    return (height, width) if orientation in SWAPPING_ORIENTATIONS else (width, height)


def basic(img: Image.Image, data: bytes, orientation: int | None, frames: int) -> dict[str, Any]:
    """Format, sizes (as stored and as displayed), mode, depth, alpha, frames and resolution. Call it before
    decoding: JPEG shrink-on-load changes the size Pillow reports."""
    fmt = format_of(img.format)
    width, height = img.size
    if decoder_applies_orientation(img) and orientation in SWAPPING_ORIENTATIONS:
        width, height = height, width  # the decoder already rotated: img.size is the displayed size
    shown = displayed_size(img, orientation)
    facts: dict[str, Any] = {
        "format": fmt.name if fmt else img.format,
        "mime_type": fmt.mime_type if fmt else Image.MIME.get(img.format or "", "application/octet-stream"),
        "width": shown[0],
        "height": shown[1],
        "raw_width": width,
        "raw_height": height,
        "mode": img.mode,
        "bit_depth": bit_depth(img, data),
        "has_alpha": img.mode in ALPHA_MODES or "transparency" in img.info,
        "frames": frames,
    }
    dpi = _dpi(img)
    if dpi:
        facts["dpi"] = dpi
    if orientation is not None:
        facts["orientation"] = orientation
    return facts


def bit_depth(img: Image.Image, data: bytes) -> int:
    """Bits per sample as stored, which Pillow's mode hides for 16-bit PNG/TIFF/HEIF and 12-bit JPEG."""
    stored = img.info.get("bit_depth")  # pillow-heif
    if isinstance(stored, int):
        return stored
    if img.format == "PNG" and data[12:16] == b"IHDR" and len(data) > 24:
        return int(data[24])
    if img.format == "TIFF":
        samples = tag_value(getattr(img, "tag_v2", {}), 258)
        samples = (samples,) if isinstance(samples, int) else samples
        if isinstance(samples, tuple) and samples and all(isinstance(s, int) for s in samples):
            return int(max(samples))
    bits = getattr(img, "bits", None)  # JPEG precision
    if isinstance(bits, int) and bits > 0:
        return bits
    return MODE_BITS.get(img.mode, 8)


def _dpi(img: Image.Image) -> list[float] | None:
    dpi = img.info.get("dpi")
    if not isinstance(dpi, tuple) or len(dpi) != 2:
        return None
    try:
        values = [round(float(v), 3) for v in dpi]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not all(math.isfinite(v) and v > 0 for v in values):
        return None
    return values


ICC_SPACES = {"RGB": "RGB", "GRAY": "Gray", "CMYK": "CMYK", "Lab": "Lab", "YCbr": "YCbCr"}
MODE_SPACES = {**dict.fromkeys(GREY_MODES, "Gray"), "CMYK": "CMYK", "YCbCr": "YCbCr", "LAB": "Lab", "HSV": "HSV"}


def color_space(img: Image.Image, icc: dict[str, Any] | None) -> str | None:
    """The colour space the pixels are in: the ICC profile's when there is one, else the mode's family."""
    if icc and icc.get("color_space"):
        space: str = icc["color_space"]
        return ICC_SPACES.get(space, space)
    return MODE_SPACES.get(img.mode, "RGB")


def animation(img: Image.Image, data: bytes, frames: int) -> dict[str, Any]:
    """Loop count (from the header) and total duration in ms (from the bytes) of an animated image; empty for a
    still one. The duration is left out when the walk does not find one duration per frame."""
    if frames < 2 or img.format not in ("GIF", "WEBP", "PNG"):
        return {}
    facts: dict[str, Any] = {"animated": True}
    loop = img.info.get("loop")
    if isinstance(loop, int):
        facts["loop"] = loop
    durations = frame_durations(img.format, data)
    if len(durations) == frames:
        facts["duration_ms"] = sum(durations)
    return facts
