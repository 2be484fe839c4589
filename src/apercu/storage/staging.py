"""This process's staging folder (`<data_dir>/tmp`): uploads are written there while they arrive, and originals
kept in a remote store are copied there for the imaging process, which reads a file descriptor.

It is local to each machine whatever the blob store is; with the default store it is also the store's own
temporary folder, so that storing an upload is a hard link, not a copy.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO

INCOMING = "upload-"  # the names of uploads in progress


def _private(path: str, flags: int) -> int:
    """open()'s opener for a file only its owner may read: an upload is nobody else's business."""
    return os.open(path, flags, 0o600)


class Staging:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)

    def incoming(self) -> IO[bytes]:
        """A new named file for an upload in progress, readable by this user alone; the caller removes it (see
        `clean` for crashes). Opened directly: tempfile.NamedTemporaryFile's name retries and wrapper cost ~0.1 ms
        of the web's CPU per upload, and a random uuid's name is as good as its names."""
        return open(self.folder / f"{INCOMING}{uuid.uuid4().hex}", "xb", opener=_private)

    def as_file(self, stream: IO[bytes]) -> IO[bytes]:
        """`stream` itself when it is a real file, else a copy in an unnamed file that vanishes when closed."""
        try:
            stream.fileno()
            return stream
        except (OSError, AttributeError, ValueError):
            pass
        with stream:
            copy = tempfile.TemporaryFile(dir=self.folder)
            shutil.copyfileobj(stream, copy, 1024 * 1024)
        copy.seek(0)
        return copy

    def clean(self, older_than: float) -> int:
        """Remove the uploads that crashed requests left behind; returns how many."""
        cutoff = time.time() - older_than
        removed = 0
        for path in self.folder.glob(f"{INCOMING}*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass  # committed or removed meanwhile
        return removed
