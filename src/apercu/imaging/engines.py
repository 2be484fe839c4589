"""Decode engines: each turns an original into a reduced, 8-bit, sRGB image, by the fastest route it has.

Two implementations of one small interface, as imagor and thumbor split their processors:
- Pillow, with JPEG DCT scaling (`draft`) and `reduce()` before the final LANCZOS, colour converted through
  the embedded ICC profile with LittleCMS;
- libvips (pyvips with its bundled binary), whose shrink-on-load and streaming decoders are faster for PNG,
  WebP, TIFF and AVIF and which converts CMYK through a real profile.
`bench/thumbnails.py` measures both per format; `ENGINE_BY_FORMAT` records what it found. When libvips is
missing or refuses a file, Pillow takes over, so the choice only ever costs speed, never a thumbnail.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from typing import Any, Protocol, cast

from PIL import Image, ImageCms

from apercu.imaging import metadata
from apercu.imaging.exif import tag_value

# Shrink-on-load, measured rather than assumed (tests/decode_quality.py, bench/decode.py; issue 22): the JPEG DCT
# scale is the smallest that leaves the final LANCZOS at least DRAFT_MARGIN times the target, and reduce() (a box
# filter, for the formats without shrink-on-load) stops REDUCING_GAP times above it. A box-like step that leaves
# less aliases on real photographs: against a full-resolution float LANCZOS, a 12 MP iPhone photo decoded at 1/8
# (2.0x left) scores 43.1 dB and at 1/4 (3.9x) 50.3 dB; the corpus' camera JPEGs score 31-44 dB at 1.2-2.0x and
# 48-51 dB from 2.2x up. The smallest scale that merely covers the target (what the issue proposed) fails the
# 45 dB floor on 9 of them; 2.5 holds it on every input, for 9 ms more CPU on a 12 MP JPEG (1/4 instead of 1/8).
DRAFT_MARGIN = 2.5
REDUCING_GAP = 2.5
DEEP_MODES = set(metadata.MODE_BITS) - {"1"}  # 16- and 32-bit samples
VIPS_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
TILE_WIDTH = 322
MAX_VIPS_WIDTH = 200_000  # pixels; see _suits_vips
MAX_VIPS_TILES_ACROSS = 1024
# The loader's options, as a string: thumbnail_buffer's own `fail_on` is not passed on to the loader, which then
# fills missing data with black, slowly (a 95-byte PNG declaring 24x2000000 pixels took 17 s) instead of failing.
LOADER_OPTIONS = "fail_on=error"
TRANSFORMS_KEPT = 8  # colour transforms to sRGB kept built, see _transform_to_srgb
MAX_KEPT_PROFILE = 1024 * 1024  # bytes
Box = tuple[float, float, float, float]  # left, top, right, bottom, in decoded pixels


class Engine(Protocol):
    name: str

    def reduce(self, img: Image.Image, data: bytes, size: int) -> tuple[Image.Image, bool]:
        """(image in L/LA/RGB/RGBA, sRGB, fitting size x size; whether it is already upright)."""
        ...


class PillowEngine:
    name = "pillow"

    def reduce(self, img: Image.Image, data: bytes, size: int) -> tuple[Image.Image, bool]:
        target = fitted(img.size, size)
        box = _draft(img, target)
        img.load()
        if img.tell():
            img.seek(0)
        deep = img.mode in DEEP_MODES
        frame = img.convert("F") if deep else _eight_bit(img)
        if frame.size != target:
            frame = _resampled(frame, target, box)
        frame = _scaled_to_eight_bit(frame, img.mode) if deep else to_srgb(frame, img.info.get("icc_profile"))
        return frame, metadata.decoder_applies_orientation(img)


class VipsEngine:
    name = "vips"

    def reduce(self, img: Image.Image, data: bytes, size: int) -> tuple[Image.Image, bool]:
        pyvips = load_pyvips()
        # One source over the bytes for both reads: pyvips copies a `bytes` argument into a blob libvips can
        # own on every *_buffer call (for a 12 MP PNG, two 18 MB copies: 4-7 ms with their page faults), a
        # memory source only refers to the caller's bytes, which outlive this call and its pixels.
        source = pyvips.Source.new_from_memory(data)
        _same_canvas(pyvips.Image.new_from_source(source, LOADER_OPTIONS), img)
        colour = {"export_profile": "srgb"} if _needs_colour_management(img) else {}
        # Exactly the size Pillow's rounding gives (as the Pillow engine and the quality reference have it):
        # libvips' own keeps one scale for both sides, which leaves the cut side's last pixel partly outside
        # and shifts the picture by up to a third of an output pixel (41.5 dB instead of 49 on a 278x374 TIFF).
        width, height = fitted(img.size, size)
        thumb = pyvips.Image.thumbnail_source(
            source, width, height=height, size="force", no_rotate=True, option_string=LOADER_OPTIONS, **colour
        )
        if thumb.format != "uchar":
            grey = thumb.interpretation in ("b-w", "grey16")
            thumb = thumb.colourspace("b-w" if grey else "srgb").cast("uchar")
        if thumb.bands not in VIPS_MODES:  # e.g. CMYK with alpha
            thumb = thumb.colourspace("srgb").cast("uchar")
        mode = VIPS_MODES[thumb.bands]
        frame = Image.frombytes(mode, (thumb.width, thumb.height), thumb.write_to_memory())
        return frame, False


class CanvasMismatch(Exception):
    """libvips reads a larger canvas from the file than Pillow does: Pillow's is the one the limit was checked on."""


def _same_canvas(header: Any, img: Image.Image) -> None:
    """Refuse (so that Pillow decodes instead) a file whose header libvips reads as more pixels than Pillow's:
    the pixel limit was checked on Pillow's reading, and a malformed file can read differently to each."""
    if header.width * header.height > img.width * img.height:
        raise CanvasMismatch(f"libvips reads {header.width}x{header.height}, Pillow {img.width}x{img.height}")


def _needs_colour_management(img: Image.Image) -> bool:
    """CMYK always (libvips brings a CMYK profile when the file has none); colour images with a profile.
    Greyscale is left alone so that it stays greyscale."""
    if img.mode == "CMYK":
        return True
    return bool(img.info.get("icc_profile")) and img.mode not in metadata.GREY_MODES


@functools.cache
def load_pyvips() -> Any:
    import pyvips

    pyvips.cache_set_max(0)  # one image at a time: an operation cache would only hold memory
    return pyvips


@functools.cache
def vips_available() -> bool:
    try:
        load_pyvips()
    except Exception:  # noqa: BLE001 - a missing or broken libvips means Pillow does everything
        return False
    return True


PILLOW, VIPS = PillowEngine(), VipsEngine()
# HEIF stays with pillow-heif: the libvips wheel is built without an HEVC decoder.
ENGINE_BY_FORMAT = {"PNG": VIPS, "WEBP": VIPS, "TIFF": VIPS, "AVIF": VIPS}


def engines_for(img: Image.Image) -> list[Engine]:
    """Engines to try in order: the measured fastest for this format, then Pillow as the fallback."""
    preferred = ENGINE_BY_FORMAT.get(img.format or "", PILLOW)
    if img.format == "JPEG" and img.mode == "CMYK":
        preferred = VIPS  # converts CMYK through a real profile even when the file embeds none
    if preferred is VIPS and vips_available() and _suits_vips(img):
        return [VIPS, PILLOW]
    return [PILLOW]


def _suits_vips(img: Image.Image) -> bool:
    """Whether libvips reads this shape well. It slows down with the width: a 4000000x24 PNG takes it 2.1 s
    (Pillow 0.7 s; 10000x9600, as many pixels, 0.1 s), and its time is quadratic in the tiles across a tiled
    TIFF (0.1 s for 100000x24 in 64-pixel tiles, 51 s for 1600000x24, which Pillow decodes in 0.5 s)."""
    if img.width > MAX_VIPS_WIDTH:
        return False
    tile_width = tag_value(getattr(img, "tag_v2", {}), TILE_WIDTH) if img.format == "TIFF" else None
    return not (isinstance(tile_width, int) and tile_width > 0 and img.width > tile_width * MAX_VIPS_TILES_ACROSS)


def fitted(size: tuple[int, int], bound: int) -> tuple[int, int]:
    """The size that fits in bound x bound keeping the aspect ratio, never larger than `size`: Pillow's
    `thumbnail` rounding (the side that is cut is rounded to the nearer aspect ratio)."""
    width, height = size
    if width <= bound and height <= bound:
        return size
    aspect = width / height
    if aspect >= 1:
        return bound, _nearest(bound / aspect, lambda n: abs(aspect - bound / n) if n else math.inf)
    return _nearest(bound * aspect, lambda n: abs(aspect - n / bound)), bound


def _nearest(value: float, error: Callable[[int], float]) -> int:
    return max(min(math.floor(value), math.ceil(value), key=error), 1)


def _draft(img: Image.Image, target: tuple[int, int]) -> Box | None:
    """Shrink-on-load to the smallest source leaving DRAFT_MARGIN x target: for JPEG a DCT scale, for HEIF the
    file's own thumbnail item (pillow-heif takes the smallest that is a scaled copy of the image: same aspect,
    crop, rotation and colour profile). Returns the box of the decoded pixels that the whole original covers (a
    side that is not a multiple of the DCT scale ends in a partial pixel: resampling all of it shifts the picture
    by up to half an output pixel, -14 dB on a sharp 1633x1225 photo); None when nothing is scaled.

    A HEIF thumbnail item is held to the same margin as a DCT scale, which an iPhone's (320 px) never meets for
    a 256 px thumbnail: it is the phone's own soft, HEVC-compressed rendering, 24.4 dB against the float
    reference at 256 px (sharpness 0.77, where the checks want 0.85) and 28.4 dB at 128 px."""
    if img.format not in ("JPEG", "MPO", "HEIF") or target == img.size:
        return None
    wanted = (max(1, int(target[0] * DRAFT_MARGIN)), max(1, int(target[1] * DRAFT_MARGIN)))
    if wanted[0] > img.width or wanted[1] > img.height:
        return None
    drafted = img.draft(img.mode, wanted)
    return drafted[1] if drafted is not None and drafted[1] != (0, 0, *img.size) else None


def _resampled(frame: Image.Image, target: tuple[int, int], box: Box | None) -> Image.Image:
    """The final LANCZOS to `target`. libvips' reduce of 3-band 8-bit images is vectorised where Pillow's loop is
    not (817x613 -> 256x192: 3.6 ms of CPU against 6.5) and as close to the float reference (tests/decode_quality:
    0.2-5 dB closer on the JPEGs, none lower), so it resamples where it maps the pixels as Pillow would: RGB
    (Pillow premultiplies alpha; greyscale takes libvips' unvectorised path, 0.1 dB lower on the lowest input),
    whole decoded pixels (libvips centres a fractional box's partial pixel instead of leaving it out) and a
    reduction (libvips' reduce does not enlarge) under 2 x REDUCING_GAP (beyond it Pillow first takes a box
    reduction)."""
    width, height = frame.size
    if (
        box is None and frame.mode == "RGB" and vips_available()
        and target[0] <= width < 2 * REDUCING_GAP * target[0] and target[1] <= height < 2 * REDUCING_GAP * target[1]
    ):
        pyvips = load_pyvips()
        image = pyvips.Image.new_from_memory(frame.tobytes(), width, height, 3, "uchar")
        if width != target[0]:
            image = image.reduceh(width / target[0], kernel="lanczos3", gap=0.0)
        if height != target[1]:
            image = image.reducev(height / target[1], kernel="lanczos3", gap=0.0)
        if (image.width, image.height) == target:
            return Image.frombytes("RGB", target, image.write_to_memory())
    return frame.resize(target, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)


def _eight_bit(img: Image.Image) -> Image.Image:
    """Bring palette, bilevel and exotic modes to L/LA/RGB/RGBA (CMYK stays for the colour conversion)."""
    if img.mode == "P":
        return img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode == "PA":
        return img.convert("RGBA")
    if img.mode == "1":
        return img.convert("L")
    if img.mode in ("L", "RGB") and "transparency" in img.info:
        return img.convert("LA" if img.mode == "L" else "RGBA")
    if img.mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return img
    return img.convert("RGB")


def _scaled_to_eight_bit(img: Image.Image, source_mode: str) -> Image.Image:
    """Map deep samples (already resized, as floats) onto 0..255: 16-bit integers from 0..65535, floats from
    0..1 when they lie in it and from their own range otherwise, integers that fit in a byte unchanged."""
    low, high = cast(tuple[float, float], img.getextrema())  # one band: (min, max)
    if source_mode == "F" and not (0 <= low and high <= 1):
        scale, offset = 255.0 / ((high - low) or 1), -low
    elif source_mode == "F":
        scale, offset = 255.0, 0.0
    elif source_mode == "I" and 0 <= low and high <= 255:
        scale, offset = 1.0, 0.0  # 8-bit data widened by the decoder
    else:
        scale, offset = 255.0 / 65535.0, 0.0
    return img.point(lambda v: (v + offset) * scale).convert("L")


@functools.cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """Colour through the embedded profile (LittleCMS); CMYK without one falls back to Pillow's formula."""
    if img.mode in ("L", "LA") or not icc:
        return img.convert("RGB") if img.mode == "CMYK" else img
    alpha = img.getchannel("A") if img.mode == "RGBA" else None
    base = img.convert("RGB") if alpha is not None else img
    try:
        transform = _transform_to_srgb(icc, base.mode)
        if transform is None:
            return img
        converted = ImageCms.applyTransform(base, transform)
    except (ImageCms.PyCMSError, OSError, ValueError):
        converted = None
    if converted is None:  # an unusable profile: as if absent
        return img.convert("RGB") if img.mode == "CMYK" else img
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


def _transform_to_srgb(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """LittleCMS's transform from the profile to sRGB for `mode` pixels; None for RGB already in sRGB.

    Building it is what costs (2.3 ms for Display P3, the profile of every iPhone photo; 32 ms for a 400 KB LUT
    profile; applying it to a thumbnail takes 0.7 ms) and a process meets the same few profiles again and again,
    so the transforms of the TRANSFORMS_KEPT profiles used last are kept, for profiles up to MAX_KEPT_PROFILE
    bytes: files cannot make a process hold on to more than 8 MiB of profiles."""
    return (_kept_transform if len(icc) <= MAX_KEPT_PROFILE else _built_transform)(icc, mode)


def _built_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    if mode == "RGB" and _is_srgb(source):
        return None
    # Without LittleCMS's one-pixel cache, the one thing that would make a shared transform unsafe to apply
    # from several threads at once (imaging is called from threads wherever it runs in-process: tests,
    # `apercu inspect`). The pixels are the same.
    return ImageCms.buildTransform(source, _srgb(), mode, "RGB", flags=ImageCms.Flags.NOCACHE)


_kept_transform = functools.lru_cache(maxsize=TRANSFORMS_KEPT)(_built_transform)


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    description = (ImageCms.getProfileDescription(profile) or "").lower()
    return "srgb" in description
