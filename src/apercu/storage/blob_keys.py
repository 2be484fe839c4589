"""Where an image's bytes live in a blob store: one original and any number of thumbnails per image.

    originals/<id>
    thumbnails/<id>/<size>.<ext>     e.g. thumbnails/0f3a.../256.jpg, thumbnails/0f3a.../512.webp

All of an image's thumbnails share one prefix, so deleting an image is: its original, and what is under it.
"""

from __future__ import annotations

ORIGINALS = "originals/"
THUMBNAILS = "thumbnails/"


def original(image_id: str) -> str:
    return f"{ORIGINALS}{image_id}"


def thumbnail(image_id: str, size: int, ext: str) -> str:
    return f"{THUMBNAILS}{image_id}/{size}.{ext}"


def thumbnails_of(image_id: str) -> str:
    return f"{THUMBNAILS}{image_id}/"


def image_id_of(key: str) -> str:
    """The image a key belongs to (the second part of every key)."""
    return key.split("/")[1]
