"""Where a resumable upload's URL is kept between runs (as tus-js-client's urlStorage): a small JSON file mapping a
file's fingerprint to the upload the service made for it, so that a process killed mid-file, run again, asks the
service where that upload stands and sends the rest instead of starting again.

The fingerprint is the service's URL, the file's absolute path, size and modification time, and a digest of its
first and last 64 KiB: a file changed since (or another service) is a new upload, never a wrong continuation."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SAMPLE = 64 * 1024  # bytes read at each end of the file for its fingerprint
KEEP = 7 * 86400  # seconds an entry is kept: longer than any service keeps an unfinished upload (24 h by default)


def default_path() -> Path:
    """The user's cache folder: $XDG_CACHE_HOME/apercu/uploads.json (~/.cache/... without it; %LOCALAPPDATA% on
    Windows)."""
    base = os.environ.get("XDG_CACHE_HOME") or (os.environ.get("LOCALAPPDATA") if os.name == "nt" else None)
    return Path(base or Path.home() / ".cache") / "apercu" / "uploads.json"


def fingerprint(endpoint: str, path: Path, stat: os.stat_result) -> str:
    """The key of one file's upload to one service (reads at most 128 KiB of the file)."""
    digest = hashlib.sha256(f"{endpoint}\0{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode(
        "utf-8", "surrogateescape"))
    with path.open("rb") as fp:
        digest.update(fp.read(SAMPLE))
        if stat.st_size > SAMPLE:
            fp.seek(max(SAMPLE, stat.st_size - SAMPLE))
            digest.update(fp.read(SAMPLE))
    return digest.hexdigest()


class ResumeStore:
    """The JSON file at `path` (`default_path()` by default): `{fingerprint: {"url": ..., "saved": unix time}}`.
    Each change rewrites it whole through a temporary file and a rename, so a process killed while writing leaves
    the previous version, never half a file; entries older than a week are dropped then. A file that cannot be
    read (missing, damaged) is an empty store: the upload starts again, which is never wrong."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        entry = self._read().get(key)
        url = entry.get("url") if isinstance(entry, dict) else None
        return url if isinstance(url, str) else None

    def put(self, key: str, url: str) -> None:
        self._change(key, {"url": url, "saved": time.time()})

    def forget(self, key: str) -> None:
        self._change(key, None)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _change(self, key: str, entry: dict[str, Any] | None) -> None:
        with self._lock:
            data = self._read()
            if entry is None and key not in data:
                return
            cutoff = time.time() - KEEP
            data = {k: v for k, v in data.items() if _saved(v) > cutoff}
            data.pop(key, None)
            if entry is not None:
                data[key] = entry
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".uploads-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out)
            os.replace(temporary, self.path)


def _saved(entry: Any) -> float:
    """When an entry was saved (0 for one that is not an entry: dropped at the next change)."""
    saved = entry.get("saved") if isinstance(entry, dict) else None
    return float(saved) if isinstance(saved, int | float) else 0.0
