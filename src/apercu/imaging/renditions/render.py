"""Rendering one rendition of an opened original: decode once at the resolution the plan needs, then crop,
rotate, resize, fit, filter and encode with libvips.

Decoding is the thumbnails' (`thumbnail.upright`): the engine measured fastest for the format, shrink-on-load
where the decoder can, sRGB through the embedded profile, upright by EXIF orientation, first frame only, with
Pillow as the fallback for what libvips cannot read (HEIF, BMP, TGA, odd shapes). One difference: a JPEG that
Pillow decodes is drafted (DCT-scaled while decoding) to the smallest scale that still covers the output, as
thumbor does, not with the thumbnails' margin (`engines.DRAFT_MARGIN`, then 1.9x), which decodes a 2 MP photo at full
size for 512 px; and libvips, not Pillow, resamples it. Measured on that photo (orientation/Landscape_1.jpg of the
corpus, and a generated one) fitted in 512x512, PSNR of the output against a float lanczos3 resize of the full
image: JPEG q80 33.64 -> 33.65 dB (40.83 -> 40.84), PNG 45.71 -> 45.55 dB (49.02 -> 49.00), for a third less CPU
(22.8 -> 15.0 ms per JPEG rendition): the encoder's loss hides the difference.

The geometry is `geometry.plan`'s, the rule the web checks an output size with. The output carries pixels only:
no EXIF, XMP, ICC or comment; alpha is kept in PNG, WebP and AVIF and flattened on `bg` in JPEG.

AVIF is encoded by libvips' heifsave (the AV1 encoder of pyvips-binary's libheif) at AVIF_EFFORT, measured on a
2 MP photo (orientation/Landscape_1.jpg of the corpus, 1800x1200) fitted in 512x512 at q65, median of 5 on a
loaded 2-core machine, time / bytes / PSNR against the unencoded pixels:
effort 0: 23 ms, 27.3 KB, 34.15 dB; 1: 93 ms, 25.9 KB, 34.39 dB; 2: 207 ms, 25.9 KB, 34.55 dB;
3: 520 ms, 25.0 KB, 34.67 dB; libvips' default 4: ~600 ms (7.6 s for the whole 2 MP image).
Effort 0 is 4x faster than 1 for 5% more bytes and 0.2 dB less, and a browser waits for a first render.

WebP (libwebp's method, WEBP_EFFORT) and PNG (zlib level and row filters) were measured the same way (median of 9,
on a 2-core machine shared with other builds, so times are noisy; bytes and PSNR are exact):
- WebP q75: effort 1: 7-17 ms, 31.0 KB, 34.22 dB; 2: 9-21 ms, 27.4 KB, 33.77 dB; 3: 47 ms, 26.4 KB, 34.07 dB;
  4 (libwebp's default, and Pillow's, so thumbor's): 32-55 ms, 26.4 KB, 34.08 dB. Effort 2 is 3-5x faster than
  4 for 4% more bytes.
- PNG: libvips' default (zlib 6, no row filter) 10 ms but 470 KB, where Pillow (thumbor), filtering each row
  adaptively, writes 319 KB in 55 ms; adaptive filters (`filter="all"`) at zlib 6: 17-41 ms, 320 KB; at zlib 4:
  15-30 ms, 321 KB (a generated photo: 203 KB against Pillow's 214 KB). `sub` alone: 330 KB in about as long.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from apercu.imaging import engines, limits, metadata, thumbnail
from apercu.imaging.renditions import geometry
from apercu.imaging.renditions.options import EXTENSIONS, BadOption, OutputTooLarge, Rendition

AVIF_EFFORT = 0  # see the module's docstring
WEBP_EFFORT = 2  # see the module's docstring (the WebP thumbnail variants keep Pillow's method 4)
PNG_COMPRESSION = 4  # zlib's level, with adaptive row filters: see the module's docstring
PROGRESSIVE_ABOVE = thumbnail.PROGRESSIVE_ABOVE
# A crop is cut from the decoded image, which the decoder has already resampled: its edges mix in what lies just
# outside it, over the resampling kernel's reach (3 pixels for lanczos3). Decoding a crop at twice the scale it
# needs halves that reach in the output, for one more resize.
CROP_MARGIN = 2.0
BANDS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


@dataclass(frozen=True)
class Rendered:
    data: bytes
    media_type: str
    width: int
    height: int


def render(
    img: Image.Image, data: bytes, orientation: int | None, r: Rendition, *,
    max_output_pixels: int, focal_point: Mapping[str, float] | None = None,
) -> Rendered:
    """`r` (resolved to a format) of the opened image; `focal_point` is the image's stored {"x", "y"}, used
    by `g:focal` (the centre without one). Raises limits.ImageRejected for a crop outside the image and
    limits.TooManyPixels for an output over max_output_pixels; whatever else decoding raises."""
    if r.ext not in EXTENSIONS:
        raise ValueError(f"resolve `auto` before rendering: {r.ext}")
    width, height = metadata.displayed_size(img, orientation)
    try:
        p = geometry.plan(r, width, height, max_output_pixels)
    except OutputTooLarge as exc:
        raise limits.TooManyPixels(str(exc)) from exc
    except BadOption as exc:
        raise limits.ImageRejected(str(exc)) from exc
    margin = CROP_MARGIN if p.crop != (0, 0, width, height) else 1.0
    size = max(1, math.ceil(max(width, height) * min(1.0, p.decode_scale * margin) - 1e-6))
    size = _drafted(img, size)
    frame = to_vips(_region(thumbnail.upright(img, data, size=size, orientation=orientation)[0], p, width, height))
    if p.rot:
        frame = frame.rot(f"d{p.rot}")
    if (frame.width, frame.height) != p.resized:
        frame = _with_alpha_premultiplied(frame, lambda f: f.resize(
            p.resized[0] / f.width, vscale=p.resized[1] / f.height, kernel="lanczos3"))
    frame = _canvas(frame, r, p, _focus(r, p, width, height, focal_point))
    if r.blur:
        frame = _with_alpha_premultiplied(frame, lambda f: f.gaussblur(r.blur))
    if r.sharpen:
        frame = _on_colour(frame, lambda f: f.sharpen(sigma=r.sharpen))
    return Rendered(_encode(frame, r), r.media_type, frame.width, frame.height)


def _drafted(img: Image.Image, size: int) -> int:
    """The longest side to decode at: for a JPEG that Pillow decodes, DCT-scaled to no less than `size` (see the
    module's docstring), its drafted size, so that Pillow does not resample it (libvips' lanczos3 does, in a
    quarter of the CPU: 1.9 ms against 8.1 ms for 900x600 -> 512x341); else `size`. libvips' decode (CMYK) is
    left alone: it reads the file's bytes, and refuses an image whose header reads larger than Pillow's."""
    if img.format not in ("JPEG", "MPO") or engines.engines_for(img)[0] is not engines.PILLOW:
        return size
    scale = size / max(img.size)
    if scale < 1:
        img.draft(img.mode, (max(1, math.ceil(img.width * scale)), max(1, math.ceil(img.height * scale))))
    return max(img.size)


def to_vips(frame: Image.Image) -> Any:
    """The decoded frame (L/LA/RGB/RGBA) as a libvips image in sRGB, alpha kept."""
    vips = engines.load_pyvips()
    image = vips.Image.new_from_memory(frame.tobytes(), frame.width, frame.height, BANDS[frame.mode], "uchar")
    image = image.copy(interpretation="b-w" if frame.mode in ("L", "LA") else "srgb")
    return image.colourspace("srgb") if frame.mode in ("L", "LA") else image


def _region(frame: Image.Image, p: geometry.Plan, width: int, height: int) -> Image.Image:
    """The plan's crop, in the decoded frame's pixels (shrink-on-load decoded it at its own scale); cut before
    the frame is copied to libvips, so that only the region is."""
    if p.crop == (0, 0, width, height):
        return frame
    scale_x, scale_y = frame.width / width, frame.height / height
    left, top = min(frame.width - 1, round(p.crop[0] * scale_x)), min(frame.height - 1, round(p.crop[1] * scale_y))
    across = max(1, min(frame.width - left, round(p.crop[2] * scale_x)))
    down = max(1, min(frame.height - top, round(p.crop[3] * scale_y)))
    return frame.crop((left, top, left + across, top + down))


def _focus(
    r: Rendition, p: geometry.Plan, width: int, height: int, focal_point: Mapping[str, float] | None
) -> tuple[float, float] | None:
    """Where `cover` centres, as fractions of the resized image: the URL's fp, the stored focal point."""
    point = r.focus if r.gravity == "fp" else None
    if r.gravity == "focal" and focal_point is not None:
        point = (float(focal_point["x"]), float(focal_point["y"]))
    return geometry.focus_after(p, width, height, point) if point is not None else None


def _canvas(frame: Any, r: Rendition, p: geometry.Plan, focus: tuple[float, float] | None) -> Any:
    """The resized image cut to the output (cover) or centred on it with `bg` around (pad)."""
    out_w, out_h = p.output
    if (frame.width, frame.height) == p.output:
        return frame
    if r.fit == "pad":
        fill = [*r.background, 255] if frame.hasalpha() else list(r.background)
        return frame.embed((out_w - frame.width) // 2, (out_h - frame.height) // 2, out_w, out_h,
                           extend="background", background=fill)
    if r.gravity == "smart":
        return frame.smartcrop(out_w, out_h, interesting="attention")
    left, top = geometry.cover_offset(r, (frame.width, frame.height), p.output, focus)
    return frame.crop(left, top, out_w, out_h)


def _with_alpha_premultiplied(frame: Any, operation: Callable[[Any], Any]) -> Any:
    """Resampling and blurring mix neighbours: with alpha, on premultiplied samples, so that the colour of
    transparent pixels does not bleed into the visible ones."""
    if not frame.hasalpha():
        return operation(frame).cast("uchar")
    return operation(frame.premultiply()).unpremultiply().cast("uchar")


def _on_colour(frame: Any, operation: Callable[[Any], Any]) -> Any:
    """The operation on the colour bands only, the alpha band unchanged."""
    if not frame.hasalpha():
        return operation(frame).colourspace("srgb").cast("uchar")
    colour = operation(frame.extract_band(0, n=frame.bands - 1)).colourspace("srgb").cast("uchar")
    return colour.bandjoin(frame.extract_band(frame.bands - 1))


def _encode(frame: Any, r: Rendition) -> bytes:
    """Pixels only (`keep="none"`: no EXIF, XMP, ICC): sRGB is what a file without a profile means."""
    if r.ext == "jpg":
        if frame.hasalpha():
            frame = frame.flatten(background=list(r.background)).cast("uchar")
        return bytes(frame.jpegsave_buffer(
            Q=r.quality, keep="none", optimize_coding=True, subsample_mode="on",
            interlace=max(frame.width, frame.height) > PROGRESSIVE_ABOVE,
        ))
    if r.ext == "png":
        return bytes(frame.pngsave_buffer(keep="none", compression=PNG_COMPRESSION, filter="all"))
    if r.ext == "webp":
        return bytes(frame.webpsave_buffer(Q=r.quality, keep="none", effort=WEBP_EFFORT))
    return bytes(frame.heifsave_buffer(Q=r.quality, keep="none", compression="av1", effort=AVIF_EFFORT))
