"""Thumbnail variants (other sizes, WebP): rendered from the original on first request, then kept on disk.

The image was processed successfully before any variant is asked for, so rendering here decodes a file
already known to decode. A delete that races with the rendering is checked for after the write, as the
worker does, so no variant outlives its image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apercu.api.errors import ApiError
from apercu.imaging.analyse import ProcessingFailed, render_variant

EXTENSIONS = {"JPEG": "jpg", "WEBP": "webp"}


def ensure(app: Any, image_id: str, size: int, fmt: str) -> Path:
    """The variant's path, rendering it first if it does not exist yet."""
    blobs = app.storage.blobs
    variant = f"{size}.{EXTENSIONS[fmt]}"
    path = blobs.thumbnail_path(image_id, variant)
    if path.exists():
        return path
    try:
        data = blobs.read_original(image_id)
    except FileNotFoundError:
        raise ApiError(404, "no image with this id") from None
    try:
        thumb = render_variant(data, app.settings.imaging_options(), size, fmt)
    except ProcessingFailed as exc:
        raise ApiError(404, f"no thumbnail: {exc}", code="no_thumbnail") from None
    blobs.write_thumbnail(image_id, thumb.data, variant)
    if app.storage.catalog.get(image_id) is None:
        blobs.delete(image_id)
        raise ApiError(404, "no image with this id")
    return path
