"""The blob store interface: bytes under keys, with no file system path crossing it.

Every implementation keeps the same promises, which `tests/test_blob_stores.py` checks on each:
- `put` is atomic and durable: a reader sees the whole new value or the old one (or none), and once `put`
  returns, the bytes survive a crash of this process or machine;
- `open` and `stat` of a missing key raise `BlobMissing`; `delete` of a missing key is not an error;
- `keys` lists under a prefix, optionally only what was last written more than `older_than` seconds ago.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Protocol

RESUMABLE_PREFIX = "uploads/"  # resumable uploads' bytes: kept (multipart uploads too) until their own sweep


class BlobMissing(LookupError):
    """No blob under this key (never written, or deleted)."""


@dataclass(frozen=True)
class BlobInfo:
    size: int
    modified: float  # seconds since the epoch
    etag: str  # changes whenever the content does (the server's ETag, or derived from the file's stat)


class BlobStore(Protocol):
    def put(self, key: str, source: bytes | IO[bytes], *, durable: bool = True) -> None:
        """Store `source` (bytes, or a stream read from its current position to its end) under `key`; with
        `durable=False` (a blob made again when found missing or empty) a store may skip what makes it survive a
        machine's crash, such as an fsync."""

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
