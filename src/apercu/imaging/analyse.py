"""The one imaging entry point: the bytes of an original in, its metadata and thumbnail out.

The image is opened once and its pixels decoded once. Header facts and metadata blocks are read before any
decoding (JPEG shrink-on-load changes the size Pillow reports, Pillow's TIFF decoder strips the orientation
it applies, and PNG chunks are walked rather than loaded). When decoding fails, what the header said is kept
and handed over with the failure, so a broken file still shows its metadata.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import warnings as warnings_module
from dataclasses import dataclass
from typing import Any, Iterator

from PIL import Image

from apercu.imaging import embedded, limits, metadata, thumbnail
from apercu.imaging import exif as exif_json
from apercu.imaging.formats import FORMATS, HEAD_BYTES, prepare_plugins, tiff_directory


class ProcessingFailed(Exception):
    """The image could not be processed; the message is meant for the person who uploaded it.

    `metadata` holds what could be read before the failure (empty when the file could not even be opened)."""

    def __init__(self, message: str, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.metadata = metadata or {}


@dataclass(frozen=True)
class Options:
    thumbnail_size: int = 256
    thumbnail_quality: int = 85
    max_pixels: int = 100_000_000
    background: tuple[int, int, int] = thumbnail.WHITE


@dataclass
class Analysis:
    metadata: dict[str, Any]  # what was read, unreadable parts listed under "warnings"
    thumbnail: thumbnail.Thumbnail


MAX_WARNINGS = 20
ALL_PLUGINS = [plugin for fmt in FORMATS for plugin in fmt.plugins]


def _registered_plugins() -> list[str]:
    """Our plugins that this process has loaded: Pillow fails on a format name it does not know (HEIF is
    registered only once a HEIF file has been seen)."""
    Image.init()
    return [plugin for plugin in ALL_PLUGINS if plugin in Image.OPEN]


def analyse(data: bytes, options: Options = Options()) -> Analysis:
    """Metadata and thumbnail of one image; raises ProcessingFailed with a readable message.

    Pillow's own complaints about the file (corrupt EXIF, truncated tags) join the image's `warnings`."""
    with _pillow_warnings() as caught:
        try:
            result = _analyse(data, options)
        except ProcessingFailed as exc:
            if exc.metadata:
                exc.metadata = _with_warnings(exc.metadata, _merged(caught, exc.metadata))
            raise
    result.metadata = _with_warnings(result.metadata, _merged(caught, result.metadata))
    return result


def render_variant(data: bytes, options: Options, size: int, fmt: str) -> thumbnail.Thumbnail:
    """Another size or format of an already processed image's thumbnail (rendered on first request)."""
    with _pillow_warnings(), _open(data) as img:
        try:
            limits.check_pixels(img.width, img.height, options.max_pixels)
            return thumbnail.render(
                img, data, size=size, quality=options.thumbnail_quality,
                orientation=metadata.orientation_of(img, embedded.exif_only(img, data)),
                background=options.background, fmt=fmt,
            )
        except Exception as exc:  # noqa: BLE001 - as in analyse: a property of the file
            raise ProcessingFailed(f"cannot render thumbnail: {embedded.describe(exc)}") from exc


@contextlib.contextmanager
def _pillow_warnings() -> Iterator[list[warnings_module.WarningMessage]]:
    """Record what Pillow warns about while it reads this one file (workers process one file at a time)."""
    limits.configure_pillow()
    with warnings_module.catch_warnings(record=True) as caught:
        warnings_module.simplefilter("always", UserWarning)
        warnings_module.simplefilter("ignore", Image.DecompressionBombWarning)
        yield caught


def _merged(caught: list[warnings_module.WarningMessage], facts: dict[str, Any]) -> list[str]:
    """Ours first, then Pillow's, each once (the same complaint recurs across a file's directories)."""
    combined = list(facts.get("warnings", []))
    for message in caught:
        text = f"decoder: {str(message.message).strip()}"
        if text not in combined and len(combined) < MAX_WARNINGS:
            combined.append(text)
    return combined


def _open(data: bytes) -> Image.Image:
    prepare_plugins(data[:HEAD_BYTES])
    try:
        return Image.open(io.BytesIO(data), formats=_registered_plugins())
    except Image.DecompressionBombError as exc:
        raise ProcessingFailed(f"image rejected as a decompression bomb: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any reader error is a property of the file
        raise ProcessingFailed(f"cannot read image: {embedded.describe(exc)}", _salvage(data)) from exc


class _Digest(threading.Thread):
    """SHA-256 of the original on the other core while the decoder runs (both release the GIL)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(name="apercu-sha256", daemon=True)
        self.data, self.hexdigest = data, ""
        self.start()

    def run(self) -> None:
        self.hexdigest = hashlib.sha256(self.data).hexdigest()

    def result(self) -> str:
        self.join()
        return self.hexdigest


def _analyse(data: bytes, options: Options) -> Analysis:
    digest = _Digest(data)
    with _open(data) as img:
        warnings: list[str] = []
        facts, orientation = _header_facts(img, data, warnings)
        try:
            thumb = _thumbnail(img, data, options, orientation)
        except ProcessingFailed as exc:
            facts["sha256"] = digest.result()
            raise ProcessingFailed(str(exc), _with_warnings(facts, warnings)) from exc
        facts["sha256"] = digest.result()
        facts.update(metadata.animation(img))
        return Analysis(_with_warnings(facts, warnings), thumb)


def _thumbnail(img: Image.Image, data: bytes, options: Options, orientation: int | None) -> thumbnail.Thumbnail:
    try:
        limits.check_pixels(img.width, img.height, options.max_pixels)
        return thumbnail.render(
            img, data, size=options.thumbnail_size, quality=options.thumbnail_quality,
            orientation=orientation, background=options.background,
        )
    except limits.ImageRejected as exc:
        raise ProcessingFailed(str(exc)) from exc
    except (MemoryError, RecursionError) as exc:
        raise ProcessingFailed(f"image too complex to decode: {type(exc).__name__}") from exc
    except Exception as exc:  # noqa: BLE001 - any decoder error is a property of the file, not a crash
        raise ProcessingFailed(f"cannot decode image: {embedded.describe(exc)}") from exc


def _header_facts(img: Image.Image, data: bytes, warnings: list[str]) -> tuple[dict[str, Any], int | None]:
    """Everything but the pixels, and the orientation the thumbnail must apply."""
    exif, blocks = embedded.read(img, data, warnings)
    orientation = metadata.orientation_of(img, exif)
    facts = metadata.basic(img, data, orientation)
    facts["bytes"] = len(data)
    facts.update(blocks)
    color_space = metadata.color_space(img, facts.get("icc"))
    if color_space:
        facts["color_space"] = color_space
    return facts, orientation


def _salvage(data: bytes) -> dict[str, Any]:
    """What a file Pillow cannot open still tells: for a TIFF, its first directory, read as EXIF is."""
    directory = tiff_directory(data)
    if directory is None:
        return {}
    tags, warnings = exif_json.read_exif(directory)
    salvaged = {
        "format": "TIFF",
        "mime_type": "image/tiff",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "exif": tags,
    }
    return _with_warnings(salvaged, warnings)


def _with_warnings(facts: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    facts = {k: v for k, v in facts.items() if k != "warnings"}
    return {**facts, "warnings": list(warnings)} if warnings else facts
