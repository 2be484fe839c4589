"""Where an image's bytes live in a blob store: one original and any number of thumbnails and renditions per image.

    originals/<id>
    thumbnails/<id>/<size>.<ext>     e.g. thumbnails/0f3a.../256.jpg, thumbnails/0f3a.../512.webp
    renditions/<id>/<digest>.<ext>   the digest of the rendition's canonical name (`Rendition.key`), whose
                                     options hold `/` and `:`, and may be longer than a key should be

All of an image's thumbnails share one prefix, and so do its renditions, so deleting an image is: its original,
and what is under those.
"""

from __future__ import annotations

import hashlib

ORIGINALS = "originals/"
THUMBNAILS = "thumbnails/"
RENDITIONS = "renditions/"
PREFIXES = (ORIGINALS, THUMBNAILS, RENDITIONS)


def original(image_id: str) -> str:
    return f"{ORIGINALS}{image_id}"


def thumbnail(image_id: str, size: int, ext: str) -> str:
    return f"{THUMBNAILS}{image_id}/{size}.{ext}"


def thumbnails_of(image_id: str) -> str:
    return f"{THUMBNAILS}{image_id}/"


def rendition(image_id: str, name: str) -> str:
    """The key of a rendition by its canonical name (`fit:cover/h:300/w:400.avif`)."""
    stem, _, ext = name.rpartition(".")
    return f"{RENDITIONS}{image_id}/{hashlib.sha256(stem.encode()).hexdigest()[:40]}.{ext}"


def derived_of(image_id: str) -> tuple[str, ...]:
    """The prefixes of what is made from an image's original: its thumbnails and its renditions."""
    return thumbnails_of(image_id), f"{RENDITIONS}{image_id}/"


def image_id_of(key: str) -> str:
    """The image a key belongs to (the second part of every key)."""
    return key.split("/")[1]
