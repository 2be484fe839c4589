"""The guard rails around Pillow: which plugins exist, and how large an image we agree to decode.

A decompression bomb is a small file that declares an enormous canvas. We refuse it from the header, before a
single pixel is allocated, with a limit the deployment chooses rather than Pillow's process-wide default.
"""

from __future__ import annotations

import functools
import warnings

from PIL import Image


class ImageRejected(Exception):
    """An image we recognised but will not process; the message is shown to the client as is."""


@functools.cache
def configure_pillow() -> None:
    """Silence Pillow's warnings: the bomb warning (we apply our own limit, below) and its complaints about
    corrupt metadata, which we report per image under `warnings` instead. Idempotent."""
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


@functools.cache
def enable_heif() -> None:
    """Register pillow-heif's plugin, on the first HEIF file only: it costs ~7 MiB of memory per process."""
    import pillow_heif

    pillow_heif.register_heif_opener()


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse a canvas larger than max_pixels before it is decoded."""
    if width * height > max_pixels:
        raise ImageRejected(
            f"image is {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}"
        )
