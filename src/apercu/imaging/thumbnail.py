"""Thumbnails: the smallest decode that still resamples well, upright, flattened, as a metadata-free JPEG.

The order of the steps is chosen for speed without cost in quality: shrink-on-load first (JPEG DCT scaling),
then one LANCZOS resize (Pillow premultiplies alpha while resizing), and only then the cheap steps - rotation,
flattening and bit-depth scaling - on the small image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# How much larger than the target the shrink-on-load decode stays, so LANCZOS still has detail to work with.
DRAFT_MARGIN = 2
REDUCING_GAP = 3.0
PROGRESSIVE_ABOVE = 200
DEEP_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


@dataclass(frozen=True)
class Thumbnail:
    jpeg: bytes
    width: int
    height: int


def prepare_decode(img: Image.Image, size: int) -> None:
    """Ask the decoder for a reduced image (JPEG DCT scaling) before any pixel is read."""
    if img.format not in ("JPEG", "MPO"):
        return
    scale = size * DRAFT_MARGIN / max(img.size)
    if scale < 1:
        target = (max(1, int(img.width * scale)), max(1, int(img.height * scale)))
        img.draft(img.mode if img.mode != "RGB" else "RGB", target)


def render(
    img: Image.Image,
    *,
    size: int,
    quality: int,
    orientation: int | None,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Thumbnail:
    """Resize a decoded image to fit size x size (never upscaled), make it upright and encode it as JPEG."""
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    deep = img.mode in DEEP_MODES
    frame = img.convert("F") if deep else _eight_bit(img)
    frame.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    if deep:
        frame = _scaled_to_eight_bit(frame, img.mode)
    if orientation in TRANSPOSE:
        frame = frame.transpose(TRANSPOSE[orientation])
    frame = _flatten(frame, background)
    out = io.BytesIO()
    frame.save(
        out,
        "JPEG",
        quality=quality,
        optimize=True,
        progressive=max(frame.size) > PROGRESSIVE_ABOVE,
        subsampling="4:2:0",
    )
    return Thumbnail(out.getvalue(), frame.width, frame.height)


def _eight_bit(img: Image.Image) -> Image.Image:
    """Bring deep or exotic modes to 8-bit L/RGB/RGBA/LA, scaling the range rather than clipping it."""
    if img.mode == "P":
        return img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode == "PA":
        return img.convert("RGBA")
    if img.mode in ("1",):
        return img.convert("L")
    if img.mode in ("L", "LA", "RGB", "RGBA"):
        if img.mode in ("L", "RGB") and "transparency" in img.info:
            return img.convert("LA" if img.mode == "L" else "RGBA")
        return img
    return img.convert("RGB")


def _scaled_to_eight_bit(img: Image.Image, source_mode: str) -> Image.Image:
    """Map deep samples (already resized, as floats) onto 0..255: 16-bit integers from 0..65535, floats from
    0..1 when they lie in it and from their own range otherwise, integers that fit in a byte unchanged."""
    low, high = img.getextrema()
    if source_mode == "F" and not (0 <= low and high <= 1):
        scale, offset = 255.0 / ((high - low) or 1), -low
    elif source_mode == "F":
        scale, offset = 255.0, 0.0
    elif source_mode == "I" and 0 <= low and high <= 255:
        scale, offset = 1.0, 0.0  # 8-bit data widened by the decoder
    else:
        scale, offset = 255.0 / 65535.0, 0.0
    return img.point(lambda v: (v + offset) * scale).convert("L")


def _flatten(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Composite any alpha channel over the background colour; greyscale stays greyscale."""
    if img.mode == "RGBA":
        base = Image.new("RGB", img.size, background)
        base.paste(img, mask=img.getchannel("A"))
        return base
    if img.mode == "LA":
        grey = round(0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2])
        base = Image.new("L", img.size, grey)
        base.paste(img.getchannel("L"), mask=img.getchannel("A"))
        return base
    return img
