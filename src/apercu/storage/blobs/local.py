"""The blob store on a local directory (or a mounted volume): `<root>/<kind>/<ab>/<name>[/rest]`.

Keys map to paths with a two-character shard after the first part (`originals/0f3a...` is stored as
`originals/0f/0f3a...`), so no directory grows past a few thousand entries.

Writes are atomic and durable: data goes to a temporary file under `<root>/tmp`, is fsynced, and is renamed into
place, and the directory is fsynced too. A reader therefore sees a whole file or no file, and a blob that was
stored survives a crash of the process or of the machine. A `durable=False` put (a rendered variant) skips the two
fsyncs, ~5 ms of a first request's wait: after a machine crash it may be missing or empty, and is rendered again
when next asked for (`Service._variant`). A source that is already a file on the same file
system (an upload staged in the data directory) is fsynced and hard-linked into place instead of copied.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from apercu.storage.blobs.store import BlobInfo, BlobMissing

KEY = re.compile(r"^[a-z]+/[0-9A-Za-z_-][0-9A-Za-z_.-]+(/[0-9A-Za-z_.-]+)*$")


class LocalBlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, source: bytes | IO[bytes], *, durable: bool = True) -> None:
        target = self._path(key)
        if not isinstance(source, bytes) and self._linked(source, target):
            return
        staged = self.tmp / f"put-{uuid.uuid4().hex}"
        try:
            self._copy(source, staged, durable)
            self._rename_into_place(staged, target, durable)
        finally:
            staged.unlink(missing_ok=True)

    def open(self, key: str) -> IO[bytes]:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise BlobMissing(key) from None

    def stat(self, key: str) -> BlobInfo:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            raise BlobMissing(key) from None
        return BlobInfo(st.st_size, st.st_mtime, f"{st.st_mtime_ns:x}-{st.st_size:x}-{st.st_ino:x}")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        if path.parent.parent.parent != self.root:  # a per-image folder (thumbnails/ab/<id>/): drop it once empty
            try:
                path.parent.rmdir()
            except OSError:
                pass  # not empty, or already gone

    def keys(self, prefix: str, older_than: float = 0.0) -> Iterator[str]:
        cutoff = time.time() - older_than
        for dirpath, _dirs, files in os.walk(self._folder_of(prefix)):
            for name in files:
                path = Path(dirpath) / name
                key = self._key(path)
                if key.startswith(prefix) and (older_than <= 0 or _modified_before(path, cutoff)):
                    yield key

    def url(self, key: str, expires: int) -> str | None:
        return None

    def check(self) -> None:
        with tempfile.NamedTemporaryFile(dir=self.tmp, prefix="probe-"):
            pass

    def clean_interrupted(self, older_than: float) -> int:
        cutoff = time.time() - older_than
        removed = 0
        for path in self.tmp.glob("put-*"):
            if _modified_before(path, cutoff):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _path(self, key: str) -> Path:
        if not KEY.match(key) or ".." in key:
            raise ValueError(f"not a blob key: {key!r}")
        kind, name, *rest = key.split("/")
        return self.root.joinpath(kind, name[:2], name, *rest)

    def _folder_of(self, prefix: str) -> Path:
        """The folder holding every key that starts with `prefix` (its whole parts: `thumbnails/<id>/`)."""
        kind, *whole = prefix[: prefix.rfind("/") + 1].strip("/").split("/")
        if not kind:
            raise ValueError(f"a key prefix starts with a kind such as originals/: {prefix!r}")
        return self.root.joinpath(kind, whole[0][:2], *whole) if whole else self.root / kind

    def _key(self, path: Path) -> str:
        kind, _shard, *rest = path.relative_to(self.root).parts
        return "/".join([kind, *rest])

    def _linked(self, source: IO[bytes], target: Path) -> bool:
        """Store a whole file on this file system by hard-linking it at `target` itself, which must not exist yet
        (an upload's new key): the link appears whole and at once, as a rename would, without a staged name to
        link, rename and remove (~0.1 ms of the web's CPU per upload). False when it cannot be (not a real file,
        another file system, a key already stored): the caller copies instead."""
        name = getattr(source, "name", None)
        try:
            if not isinstance(name, str | os.PathLike) or source.tell() != 0:
                return False
            source.flush()
            os.utime(source.fileno())  # written now, as far as the sweeps go: not when the upload began arriving
            os.fsync(source.fileno())
            self._link_into_place(os.fspath(name), target)
        except (OSError, ValueError, AttributeError):
            return False  # EXDEV, EEXIST, not a real file: copy instead
        _fsync_directory(target.parent)
        return True

    @staticmethod
    def _link_into_place(source: str, target: Path) -> None:
        for _ in range(3):  # a delete may remove the (empty) per-image folder between mkdir and link
            try:
                os.link(source, target)
                return
            except FileNotFoundError:
                if not os.path.exists(source):
                    raise
                target.parent.mkdir(parents=True, exist_ok=True)
        raise FileNotFoundError(target.parent)

    @staticmethod
    def _copy(source: bytes | IO[bytes], staged: Path, durable: bool) -> None:
        with open(staged, "xb") as out:
            if isinstance(source, bytes):
                out.write(source)
            else:
                shutil.copyfileobj(source, out, 1024 * 1024)
            out.flush()
            if durable:
                os.fsync(out.fileno())

    @staticmethod
    def _rename_into_place(source: Path, target: Path, durable: bool) -> None:
        for _ in range(3):  # a delete may remove the (empty) per-image folder between mkdir and rename
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(source, target)
                break
            except FileNotFoundError:
                if not source.exists():
                    raise
        else:
            raise FileNotFoundError(target.parent)
        if durable:
            _fsync_directory(target.parent)


def _fsync_directory(path: Path) -> None:
    """Make the names just written in a directory durable."""
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _modified_before(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False  # removed meanwhile (a delete, a commit): nothing to clean
