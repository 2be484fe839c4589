"""Rendering one rendition of an opened original: decode once at the resolution the plan needs, then crop,
rotate, resize, fit and filter with libvips, and encode.

Decoding is the thumbnails' (`thumbnail.upright`): the engine measured fastest for the format, shrink-on-load
where the decoder can, sRGB through the embedded profile, upright by EXIF orientation, first frame only, with
Pillow as the fallback for what libvips cannot read (HEIF, BMP, TGA, odd shapes). Two differences for a JPEG that
Pillow decodes:
- it is drafted (DCT-scaled while decoding) to the smallest scale that still covers the output, as thumbor does,
  not with the thumbnails' margin (`engines.DRAFT_MARGIN`, then 1.9x), which decodes a 2 MP photo at full size
  for 512 px; and libvips, not Pillow, resamples it. Measured on that photo (orientation/Landscape_1.jpg of the
  corpus, and a generated one) fitted in 512x512, PSNR of the output against a float lanczos3 resize of the full
  image: JPEG q80 33.64 -> 33.65 dB (40.83 -> 40.84), PNG 45.71 -> 45.55 dB (49.02 -> 49.00), for a third less
  CPU (22.8 -> 15.0 ms per JPEG rendition): the encoder's loss hides the difference;
- its embedded profile converts the resized pixels, not the decoded ones (libvips' thumbnail does the same for
  what it decodes): LittleCMS costs per pixel, 14.8 ms for 900x600 against 3.6 ms for 512x341. The same photos
  with an Adobe RGB profile, 512 px: 27-29 -> 18-21 ms per JPEG or WebP rendition; PSNR against the full image
  converted, then resized in float: JPEG q80 33.02 -> 33.01 dB (40.06 -> 39.86), WebP q75 32.99 -> 32.99
  (38.97 -> 38.85), lossless PNG 45.91 -> 44.36 (46.79 -> 45.42).

The geometry is `geometry.plan`'s, the rule the web checks an output size with. The output carries pixels only:
no EXIF, XMP, ICC or comment; alpha is kept in PNG, WebP and AVIF and flattened on `bg` in JPEG.

Encoders, measured on the 512x341 pixels of both photos (median CPU of 25-30, one libvips thread, on a loaded
2-core machine: times are noisy, bytes and PSNR exact; thumbor's bytes for the same request in brackets):
- JPEG: Pillow's libjpeg-turbo, baseline, optimised Huffman tables, 4:2:0. It writes the same bytes as libvips'
  jpegsave (pyvips-binary's mozjpeg 5, its extensions off) in less time: progressive 4.5 against 6.2 ms
  (2.9 against 4.6 for the generated photo), baseline 1.9 against 3.4 (1.4 against 3.1). Progressive, as
  thumbor writes it, costs another 1.5-2.5 ms for the same pixels, 2.3% fewer bytes on the corpus photo
  (36.6 KB against 37.4 [36.6]) and 3% more on the generated ones (11.3 against 10.9 [11.3]).
- WebP q75: Pillow's libwebp at method WEBP_EFFORT: the same bytes as libvips' webpsave at that effort, in 12.5
  against 16.4 ms (5.6 against 8.2). Method 1: 9.4 ms, 30.5 KB; 2: 12.5 ms, 26.6 KB, 33.66 dB against the
  unencoded pixels; 3: 26.6 ms, 25.6 KB, 33.94 dB; 4 (libwebp's default, and Pillow's, so thumbor's): 26.7 ms,
  25.7 KB, 33.96 dB [25.6 KB]. Method 2 is twice as fast as 4 for 4% more bytes; 1 saves 3 ms more for 15%
  more bytes.
- PNG: libvips' (zlib-ng) with adaptive row filters (`filter="all"`; libvips' default, none, writes 470 KB)
  at zlib level PNG_COMPRESSION: level 4: 22.8 ms, 320 KB (22.2 ms, 205 KB); 3: 20.8 ms, 322 KB (14.9 ms,
  210 KB); 2: 19.4 ms, 325 KB (15.3 ms, 222 KB) [317 KB, 214 KB, in 66 and 83 ms by Pillow]. One filter alone
  (`sub`, `avg`, `paeth`) saves a further third, for 5-35% more bytes depending on the picture.
- AVIF: libvips' heifsave (the AV1 encoder of pyvips-binary's libheif) at AVIF_EFFORT, measured on the corpus
  photo at q65 (median of 5): effort 0: 23 ms, 27.3 KB, 34.15 dB; 1: 93 ms, 25.9 KB, 34.39 dB; 2: 207 ms,
  25.9 KB, 34.55 dB; 3: 520 ms, 25.0 KB, 34.67 dB; libvips' default 4: ~600 ms (7.6 s for the whole 2 MP
  image). Effort 0 is 4x faster than 1 for 5% more bytes and 0.2 dB less, and a browser waits for a first render.
"""

from __future__ import annotations

import io
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
PNG_COMPRESSION = 3  # zlib's level, with adaptive row filters: see the module's docstring
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
    decoded, profile = _decoded(img, data, size, orientation)
    frame = to_vips(_region(decoded, p, width, height))
    if p.rot:
        frame = frame.rot(f"d{p.rot}")
    if (frame.width, frame.height) != p.resized:
        frame = _with_alpha_premultiplied(frame, lambda f: f.resize(
            p.resized[0] / f.width, vscale=p.resized[1] / f.height, kernel="lanczos3"))
    if profile is not None:
        frame = to_vips(engines.to_srgb(_to_pillow(frame), profile))
    frame = _canvas(frame, r, p, _focus(r, p, width, height, focal_point))
    if r.blur:
        frame = _with_alpha_premultiplied(frame, lambda f: f.gaussblur(r.blur))
    if r.sharpen:
        frame = _on_colour(frame, lambda f: f.sharpen(sigma=r.sharpen))
    return Rendered(_encode(frame, r), r.media_type, frame.width, frame.height)


def _decoded(img: Image.Image, data: bytes, size: int, orientation: int | None) -> tuple[Image.Image, bytes | None]:
    """The upright frame to cut and resize, no smaller than `size` on its longest side, and the embedded profile
    its colours are still to be converted with (None: they are sRGB already).

    A JPEG that Pillow decodes is DCT-scaled to no less than `size` (see the module's docstring) and left at its
    drafted size: Pillow does not resample it (libvips' lanczos3 does, in a quarter of the CPU: 1.9 ms against
    8.1 ms for 900x600 -> 512x341), and its colours are converted after the resize, on the output's pixels
    rather than the decoded ones, as LittleCMS costs per pixel (see the module's docstring). libvips' decode
    (CMYK) is left alone: it reads the file's bytes, and refuses an image whose header reads larger than
    Pillow's."""
    if img.format not in ("JPEG", "MPO") or engines.engines_for(img)[0] is not engines.PILLOW:
        return thumbnail.upright(img, data, size=size, orientation=orientation)[0], None
    scale = size / max(img.size)
    if scale < 1:
        img.draft(img.mode, (max(1, math.ceil(img.width * scale)), max(1, math.ceil(img.height * scale))))
    # Taken out of `info`, where the engine would find it and convert the decoded pixels.
    profile = (img.info.pop("icc_profile", None) or None) if img.mode == "RGB" else None
    return thumbnail.upright(img, data, size=max(img.size), orientation=orientation)[0], profile


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
    """Pixels only (no EXIF, XMP, ICC, comment): sRGB is what a file without a profile means. JPEG and WebP go
    through Pillow's encoders (libjpeg-turbo, libwebp), which write the same bytes as libvips' for the same
    settings in less CPU (see the module's docstring); PNG and AVIF through libvips'."""
    if r.ext == "jpg":
        if frame.hasalpha():
            frame = frame.flatten(background=list(r.background)).cast("uchar")
        return _saved(frame, "JPEG", quality=r.quality, optimize=True, subsampling="4:2:0")
    if r.ext == "webp":
        return _saved(frame, "WEBP", quality=r.quality, method=WEBP_EFFORT)
    if r.ext == "png":
        return bytes(frame.pngsave_buffer(keep="none", compression=PNG_COMPRESSION, filter="all"))
    return bytes(frame.heifsave_buffer(Q=r.quality, keep="none", compression="av1", effort=AVIF_EFFORT))


def _saved(frame: Any, fmt: str, **options: Any) -> bytes:
    """The libvips image encoded by Pillow: a new image carries no `info`, so nothing but the pixels is written."""
    out = io.BytesIO()
    _to_pillow(frame).save(out, fmt, **options)
    return out.getvalue()


def _to_pillow(frame: Any) -> Image.Image:
    """The libvips image (uchar, 1-4 bands) as a new Pillow image."""
    return Image.frombytes(engines.VIPS_MODES[frame.bands], (frame.width, frame.height), frame.write_to_memory())
