"""The one imaging entry point: the bytes of an original in, its metadata and thumbnail out.

The image is opened and decoded exactly once. Header facts and EXIF are read before decoding (the JPEG
shrink-on-load changes the size Pillow reports); PNG's EXIF, which may sit after the pixel data, is read after.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from apercu.imaging import exif as exif_json
from apercu.imaging import limits, metadata, thumbnail
from apercu.imaging.formats import FORMATS


class ProcessingFailed(Exception):
    """The image could not be processed; the message is meant for the person who uploaded it."""


@dataclass(frozen=True)
class Options:
    thumbnail_size: int = 256
    thumbnail_quality: int = 85
    max_pixels: int = 100_000_000


@dataclass
class Analysis:
    metadata: dict[str, Any]
    thumbnail: thumbnail.Thumbnail
    warnings: list[str] = field(default_factory=list)


ALL_PLUGINS = [plugin for fmt in FORMATS for plugin in fmt.plugins]


def analyse(data: bytes, options: Options = Options()) -> Analysis:
    """Metadata and thumbnail of one image; raises ProcessingFailed with a readable message."""
    limits.configure_pillow()
    try:
        with Image.open(io.BytesIO(data), formats=ALL_PLUGINS) as img:
            return _analyse_open(img, data, options)
    except limits.ImageRejected as exc:
        raise ProcessingFailed(str(exc)) from exc
    except Image.DecompressionBombError as exc:
        raise ProcessingFailed(f"image rejected as a decompression bomb: {exc}") from exc
    except (MemoryError, RecursionError) as exc:
        raise ProcessingFailed(f"image too complex to decode: {type(exc).__name__}") from exc
    except Exception as exc:  # noqa: BLE001 - any decoder error is a property of the file, not a crash
        raise ProcessingFailed(f"cannot decode image: {_describe(exc)}") from exc


def _analyse_open(img: Image.Image, data: bytes, options: Options) -> Analysis:
    limits.check_pixels(img.width, img.height, options.max_pixels)
    warnings: list[str] = []
    stored_size = img.size  # before shrink-on-load changes what Pillow reports
    exif_late = img.format == "PNG"  # eXIf may follow the pixel data
    exif = None if exif_late else _exif(img, warnings)
    orientation = metadata.orientation_of(img, exif)
    tags = _exif_tags(exif, warnings)  # before TIFF's decoder strips Orientation
    thumbnail.prepare_decode(img, options.thumbnail_size)
    img.load()
    if exif_late:
        exif = _exif(img, warnings)
        orientation = metadata.orientation_of(img, exif)
        tags = _exif_tags(exif, warnings)
    facts = metadata.basic(img, stored_size, data, orientation)
    facts["bytes"] = len(data)
    facts["sha256"] = hashlib.sha256(data).hexdigest()
    if tags:
        facts["exif"] = tags
    thumb = thumbnail.render(
        img,
        size=options.thumbnail_size,
        quality=options.thumbnail_quality,
        orientation=None if metadata.decoder_applies_orientation(img) else orientation,
    )
    if warnings:
        facts["warnings"] = warnings
    return Analysis(facts, thumb, warnings)


def _exif_tags(exif: Image.Exif | None, warnings: list[str]) -> dict[str, Any]:
    if exif is None:
        return {}
    tags, exif_warnings = exif_json.read_exif(exif)
    warnings.extend(exif_warnings)
    return tags


def _exif(img: Image.Image, warnings: list[str]) -> Image.Exif | None:
    try:
        exif = img.getexif()
    except Exception as exc:  # noqa: BLE001 - malformed EXIF must not cost the rest of the image
        warnings.append(f"EXIF unreadable: {_describe(exc)}")
        return None
    return exif if len(exif) else None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
