"""The blob store interface: bytes under keys, with no file system path crossing it.

Two implementations, one module each: `local_blobs` (a directory; atomic, fsynced writes) and `s3_blobs` (any
S3-compatible server, through boto3). `open_blob_store` picks one from `APERCU_STORAGE_URL`. What the keys are
(`originals/<id>`, `thumbnails/<id>/<size>.<fmt>`) is `storage.keys`' business, not the store's.

Every implementation keeps the same promises, which `tests/test_blob_stores.py` checks on each:
- `put` is atomic and durable: a reader sees the whole new value or the old one (or none), and once `put`
  returns, the bytes survive a crash of this process or machine;
- `open` and `stat` of a missing key raise `BlobMissing`; `delete` of a missing key is not an error;
- `keys` lists under a prefix, optionally only what was last written more than `older_than` seconds ago.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from apercu.config import Settings


class BlobMissing(LookupError):
    """No blob under this key (never written, or deleted)."""


@dataclass(frozen=True)
class BlobInfo:
    size: int
    modified: float  # seconds since the epoch
    etag: str  # changes whenever the content does (the server's ETag, or derived from the file's stat)


class BlobStore(Protocol):
    def put(self, key: str, source: bytes | IO[bytes]) -> None:
        """Store `source` (bytes, or a stream read from its current position to its end) under `key`."""

    def open(self, key: str) -> IO[bytes]:
        """The blob as a stream, to be closed by the caller."""

    def stat(self, key: str) -> BlobInfo: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def keys(self, prefix: str, older_than: float = 0.0) -> Iterator[str]: ...

    def url(self, key: str, expires: int) -> str | None:
        """A URL a client can fetch the blob from directly for `expires` seconds, or None if there is none."""

    def check(self) -> None:
        """Raise unless the store can be written to (the readiness probe)."""

    def clean_interrupted(self, older_than: float) -> int:
        """Remove what interrupted writes left behind (temporary files, unfinished multipart uploads)."""


def open_blob_store(settings: Settings) -> BlobStore:
    """The store `APERCU_STORAGE_URL` names: unset or `file:///path` for a directory (unset: inside the data
    directory), `s3://bucket/prefix` for S3."""
    url = settings.storage_url
    if not url:
        from apercu.storage.local_blobs import LocalBlobStore

        return LocalBlobStore(settings.data_dir)
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path:
        from apercu.storage.local_blobs import LocalBlobStore

        return LocalBlobStore(parts.path)
    if parts.scheme == "s3" and parts.netloc:
        from apercu.storage.s3_blobs import S3BlobStore

        return S3BlobStore.connect(parts.netloc, parts.path.strip("/"), settings.s3_endpoint_url or None)
    raise ValueError(f"APERCU_STORAGE_URL={url!r} is neither file:///path nor s3://bucket/prefix")
