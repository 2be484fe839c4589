"""Where the bytes live: originals and thumbnails, behind a small interface (a local directory today).

Writes are atomic and durable: data goes to a temporary file in the same directory tree, is fsynced, and is
renamed into place, and the directory is fsynced too. A reader therefore sees a whole file or no file, and an
original that was acknowledged survives a crash of the process or of the machine.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO, Protocol


class BlobStore(Protocol):
    """What the API and the worker need from a blob store; a future S3 store implements the same."""

    def incoming(self) -> IO[bytes]: ...

    def commit_original(self, image_id: str, incoming: IO[bytes]) -> None: ...

    def read_original(self, image_id: str) -> bytes: ...

    def open_original(self, image_id: str) -> BinaryIO: ...

    def write_thumbnail(self, image_id: str, data: bytes, variant: str = "jpg") -> None: ...

    def thumbnail_path(self, image_id: str, variant: str = "jpg") -> Path: ...

    def delete(self, image_id: str) -> None: ...

    def check(self) -> None: ...

    def has_original(self, image_id: str) -> bool: ...

    def stored_ids(self, older_than: float) -> Iterator[str]: ...

    def clean_staging(self, older_than: float) -> int: ...


class LocalBlobStore:
    """Originals under originals/ab/<id>, thumbnails under thumbnails/ab/<id>.<variant>, uploads under tmp/."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.tmp = self.root / "tmp"
        for folder in (self.tmp, self.root / "originals", self.root / "thumbnails"):
            folder.mkdir(parents=True, exist_ok=True)

    def incoming(self) -> IO[bytes]:
        """A new file for an upload in progress, on the same file system as its final place."""
        return tempfile.NamedTemporaryFile(dir=self.tmp, prefix="upload-", delete=False)

    def commit_original(self, image_id: str, incoming: IO[bytes]) -> None:
        incoming.flush()
        os.fsync(incoming.fileno())
        self._rename_into_place(Path(incoming.name), self._original_path(image_id))

    def read_original(self, image_id: str) -> bytes:
        return self._original_path(image_id).read_bytes()

    def open_original(self, image_id: str) -> BinaryIO:
        """The original as an open file: the worker hands its descriptor to the imaging process unread."""
        return open(self._original_path(image_id), "rb")

    def write_thumbnail(self, image_id: str, data: bytes, variant: str = "jpg") -> None:
        target = self.thumbnail_path(image_id, variant)
        staging = self.tmp / f"thumb-{uuid.uuid4().hex}"
        with open(staging, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        self._rename_into_place(staging, target)

    def thumbnail_path(self, image_id: str, variant: str = "jpg") -> Path:
        return self.root / "thumbnails" / image_id[:2] / f"{image_id}.{variant}"

    def delete(self, image_id: str) -> None:
        """Remove the original and every thumbnail variant; what is already gone is fine."""
        self._original_path(image_id).unlink(missing_ok=True)
        folder = self.root / "thumbnails" / image_id[:2]
        for path in folder.glob(f"{image_id}.*"):
            path.unlink(missing_ok=True)

    def check(self) -> None:
        """Raise unless the store can be written to (for readiness probes)."""
        with tempfile.NamedTemporaryFile(dir=self.tmp, prefix="probe-"):
            pass

    def has_original(self, image_id: str) -> bool:
        return self._original_path(image_id).is_file()

    def stored_ids(self, older_than: float) -> Iterator[str]:
        """Ids that have an original or a thumbnail last written more than `older_than` seconds ago."""
        cutoff = time.time() - older_than
        seen: set[str] = set()
        for path in [*(self.root / "originals").glob("*/*"), *(self.root / "thumbnails").glob("*/*")]:
            image_id = path.name.split(".", 1)[0]
            if image_id not in seen and _modified_before(path, cutoff):
                seen.add(image_id)
                yield image_id

    def clean_staging(self, older_than: float) -> int:
        """Remove what crashed uploads and thumbnail writes left in the staging folder; returns how many."""
        cutoff = time.time() - older_than
        removed = 0
        for path in self.tmp.iterdir():
            if _modified_before(path, cutoff):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _original_path(self, image_id: str) -> Path:
        return self.root / "originals" / image_id[:2] / image_id

    @staticmethod
    def _rename_into_place(source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _modified_before(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False  # removed meanwhile (a delete, a commit): nothing to clean
