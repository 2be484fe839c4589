"""The blob store: bytes under keys, with no file system path crossing it.

The interface (`store`: `BlobStore`, its errors and records) and two implementations, one module each: `local`
(a directory; atomic, fsynced writes) and `s3` (any S3-compatible server, through boto3). `open_blob_store`
picks one from `APERCU_STORAGE_URL`. What the keys are (`originals/<id>`, `thumbnails/<id>/<size>.<fmt>`) is
`storage.blob_keys`' business, not the store's. The implementations import only the interface, never this
package's factory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from apercu.storage.blobs.local import LocalBlobStore
from apercu.storage.blobs.store import BlobInfo, BlobMissing, BlobStore

if TYPE_CHECKING:
    from apercu.config import Settings

__all__ = ["BlobInfo", "BlobMissing", "BlobStore", "open_blob_store"]


def open_blob_store(settings: Settings) -> BlobStore:
    """The store `APERCU_STORAGE_URL` names: unset or `file:///path` for a directory (unset: inside the data
    directory), `s3://bucket/prefix` for S3."""
    url = settings.storage_url
    if not url:
        return LocalBlobStore(settings.data_dir)
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path:
        return LocalBlobStore(parts.path)
    if parts.scheme == "s3" and parts.netloc:
        from apercu.storage.blobs.s3 import S3BlobStore  # boto3 is loaded only by processes that use S3

        return S3BlobStore.connect(parts.netloc, parts.path.strip("/"), settings.s3_endpoint_url or None)
    raise ValueError(f"APERCU_STORAGE_URL={url!r} is neither file:///path nor s3://bucket/prefix")
