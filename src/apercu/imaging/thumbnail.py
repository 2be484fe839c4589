"""Thumbnails: reduced by the fastest engine, then made upright, flattened and encoded without metadata.

The engines (see `engines`) do the expensive part - decoding with shrink-on-load and resampling - and hand
over a small sRGB image; rotation, flattening and encoding all happen here, once, on that small image, so
every engine's output gets the same treatment.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from apercu.imaging import engines

TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# The thumbnail formats a client may ask for, by file extension: Pillow's name and the media type.
OUTPUTS = {"jpg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
PROGRESSIVE_ABOVE = 200
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    width: int
    height: int
    engine: str


def render(
    img: Image.Image,
    data: bytes,
    *,
    size: int,
    quality: int,
    orientation: int | None,
    background: tuple[int, int, int] = WHITE,
    fmt: str = "JPEG",
) -> Thumbnail:
    """Fit the image in size x size (never upscaled), upright, flattened on the background, as JPEG or WebP.

    Raises what the last engine raised when none can decode the image."""
    frame, engine = reduce(img, data, size=size, orientation=orientation, background=background)
    return Thumbnail(encode(frame, fmt, quality), frame.width, frame.height, engine)


def reduce(
    img: Image.Image, data: bytes, *, size: int, orientation: int | None, background: tuple[int, int, int] = WHITE
) -> tuple[Image.Image, str]:
    """The thumbnail's pixels before encoding (upright, flattened, sRGB), and the engine's name: what the
    perceptual hashes are computed from, so that the original is decoded once."""
    frame, engine = upright(img, data, size=size, orientation=orientation)
    return flatten(frame, background), engine


def upright(img: Image.Image, data: bytes, *, size: int, orientation: int | None) -> tuple[Image.Image, str]:
    """The image fitted in size x size (never upscaled), upright, sRGB, in L/LA/RGB/RGBA (alpha kept), by the
    first engine that decodes it, and that engine's name."""
    candidates = engines.engines_for(img)
    for engine in candidates:
        try:
            frame, applied = engine.reduce(img, data, size)
            break
        except Exception:  # noqa: BLE001 - the next engine (Pillow) gets its chance; the last one's error stands
            if engine is candidates[-1]:
                raise
    if not applied and orientation in TRANSPOSE:
        frame = frame.transpose(TRANSPOSE[orientation])
    return frame, engine.name


def encode(frame: Image.Image, fmt: str, quality: int) -> bytes:
    """JPEG: 4:2:0, optimised Huffman tables, progressive above 200 px. WebP: lossy, default effort.
    Nothing but pixels is written: no EXIF, XMP or GPS ever leaves through a thumbnail."""
    out = io.BytesIO()
    if fmt == "WEBP":
        frame.save(out, "WEBP", quality=quality, method=4)
    else:
        frame.save(
            out,
            "JPEG",
            quality=quality,
            optimize=True,
            progressive=max(frame.size) > PROGRESSIVE_ABOVE,
            subsampling="4:2:0",
            comment=b"",  # else Pillow copies the original's JPEG comment, which may say where it was taken
        )
    return out.getvalue()


def flatten(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
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
