"""The guard rails around Pillow: which plugins exist, how large an image we agree to decode, and how much the
metadata of one file may inflate to.

A decompression bomb is a small file that declares an enormous canvas, or a small compressed block that inflates
to an enormous one. We refuse the canvas from the header, before a single pixel is allocated, with a limit the
deployment chooses rather than Pillow's process-wide default; and we bound every block we inflate (PNG text and
ICC chunks, in Pillow and in our own chunk walker) to the sizes below.
"""

from __future__ import annotations

import functools
import sys
import warnings

from PIL import Image, ImageFile, PngImagePlugin

from apercu.imaging.exif import tag_value

MIB = 1024 * 1024
MAX_TEXT_CHUNK = 1 * MIB  # one PNG text or ICC chunk, decompressed
MAX_TEXT_TOTAL = 8 * MIB  # all the text chunks of one PNG, decompressed
IMAGE_WIDTH, IMAGE_LENGTH, STRIP_OFFSETS, SAMPLES_PER_PIXEL, ROWS_PER_STRIP = 256, 257, 273, 277, 278
STRIP_BYTE_COUNTS, PLANAR_CONFIGURATION = 279, 284
TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS = 322, 323, 324, 325


class ImageRejected(Exception):
    """An image we recognised but will not process; the message is shown to the client as is."""


class TooManyPixels(ImageRejected):
    """Refused for its canvas, larger than the deployment allows: a limit, not a broken file."""


@functools.cache
def configure_pillow() -> None:
    """Pillow's process-wide settings, once: idempotent.

    - Its warnings are silenced: the bomb warning (we apply our own limit, below) and its complaints about
      corrupt metadata, which we record per image and report under `warnings` instead.
    - A plugin that recognises a file but cannot read its header says why (as one of those warnings), instead
      of Pillow only saying that no plugin could identify the file.
    - A truncated file fails rather than being decoded with grey where its data is missing.
    - A PNG's text and ICC chunks inflate to MAX_TEXT_CHUNK each and MAX_TEXT_TOTAL together, as ours do.
    """
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    Image.WARN_POSSIBLE_FORMATS = True
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    PngImagePlugin.MAX_TEXT_CHUNK = MAX_TEXT_CHUNK
    PngImagePlugin.MAX_TEXT_MEMORY = MAX_TEXT_TOTAL


@functools.cache
def enable_heif() -> None:
    """Register pillow-heif's plugin, on the first HEIF file only: it costs ~7 MiB of memory per process."""
    import pillow_heif

    pillow_heif.register_heif_opener()


def set_decode_threads(threads: int) -> None:
    """How many threads libheif may decode one HEIF file with (pillow-heif's default is 4, whatever else runs):
    the worker gives each imaging process the cores its own concurrency leaves idle. A HEIF file registers the
    plugin, so this is set before each file, only once the plugin is there."""
    if "pillow_heif" in sys.modules:
        sys.modules["pillow_heif"].options.DECODE_THREADS = max(1, threads)


def check_before_decoding(img: Image.Image, size: int, max_pixels: int) -> None:
    """Everything the header of an opened image must pass before its pixels are decoded; `size` is the file's."""
    check_pixels(img.width, img.height, max_pixels)
    check_tiff_data(img, size)


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse a canvas larger than max_pixels before it is decoded."""
    if width * height > max_pixels:
        raise TooManyPixels(
            f"image is {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}"
        )


def check_tiff_data(img: Image.Image, size: int) -> None:
    """Refuse a TIFF whose strip or tile table does not cover its canvas, or points past the end of the file.

    Either way the file is truncated or malformed and no decoder will make an image of it, but they allocate
    (and libtiff fills) the canvas and a whole strip before they find out: Pillow's libtiff decoder took 740 MB
    for a 4 KiB file declaring one 300 MB strip, 415 MB for one declaring 334 strips and holding one. A table
    Pillow cannot read is left for the decoder to complain about."""
    layout = _tiff_layout(img)
    if layout is None:
        return
    what, offsets, counts, needed = layout
    if len(offsets) < needed:
        raise ImageRejected(f"image data is truncated: {len(offsets)} {what} where its size needs {needed}")
    end = max((offset + count for offset, count in zip(offsets, counts, strict=False)), default=0)
    if end > size:
        raise ImageRejected(f"image data is truncated: its {what} end {end - size} bytes past the end of the file")


def _tiff_layout(img: Image.Image) -> tuple[str, tuple[int, ...], tuple[int, ...], int] | None:
    """("strips" or "tiles", their offsets, their byte counts, how many the canvas needs), None if unreadable.
    The canvas is the stored one (Pillow reports a TIFF's size already rotated by its orientation)."""
    if img.format != "TIFF":
        return None
    tags = getattr(img, "tag_v2", {})
    width, length = _positive(tags, IMAGE_WIDTH), _positive(tags, IMAGE_LENGTH)
    tile_width, tile_length = _positive(tags, TILE_WIDTH), _positive(tags, TILE_LENGTH)
    if width is None or length is None:
        return None
    if tile_width and tile_length:
        what, offsets_tag, counts_tag = "tiles", TILE_OFFSETS, TILE_BYTE_COUNTS
        needed = -(-width // tile_width) * -(-length // tile_length)
    else:
        what, offsets_tag, counts_tag = "strips", STRIP_OFFSETS, STRIP_BYTE_COUNTS
        needed = -(-length // (_positive(tags, ROWS_PER_STRIP) or length))
    if tag_value(tags, PLANAR_CONFIGURATION) == 2:  # one table entry per sample
        needed *= _positive(tags, SAMPLES_PER_PIXEL) or 1
    offsets, counts = _integers(tag_value(tags, offsets_tag)), _integers(tag_value(tags, counts_tag))
    return (what, offsets, counts, needed) if offsets and counts else None


def _positive(tags: object, tag: int) -> int | None:
    values = _integers(tag_value(tags, tag))  # type: ignore[arg-type]
    return values[0] if values and values[0] > 0 else None


def _integers(value: object) -> tuple[int, ...]:
    values = value if isinstance(value, tuple) else (value,)
    return values if all(isinstance(v, int) for v in values) else ()
