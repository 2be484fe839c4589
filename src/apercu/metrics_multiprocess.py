"""Where this process's metrics are written: a directory of its own under `<data_dir>/metrics`, the storage of
prometheus_client's multiprocess mode, set up at the start of `apercu web`, `apercu worker` (so of both halves of
`apercu serve`) and `celery -A apercu.worker`.

A web server is several processes (gunicorn's workers) and each keeps its own counts: only files that every one
of them writes, summed at scrape time, give the same /metrics whichever process answers. Each *role process* (the
gunicorn master, whose forked workers write beside it; a worker) gets `<data_dir>/metrics/<role>-<pid>-<nonce>`
and holds an exclusive lock on its `lock` file for as long as it or a process it forked lives. The web's
/metrics sums every directory there (`apercu.metrics`), so when the worker shares the data directory (`apercu
serve`) its counters are in the same scrape. A starting role removes the directories whose lock nobody holds
(roles that are gone: their counters restart from zero, as any process's do), never a living sibling's:
`apercu web` and `apercu worker` started separately on one data directory do not wipe each other's files.

This must run before `prometheus_client` is imported: it picks single- or multi-process mode on import, from
PROMETHEUS_MULTIPROC_DIR. Hence a module of its own, which imports nothing of it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
ROOT = "metrics"
LOCK = "lock"
NEW = ".new-"  # a directory being set up: locked, then renamed into place
NEW_GRACE = 60.0  # an unlocked directory still named NEW this old is debris of a crashed start
log = logging.getLogger(__name__)
_prepared: dict[int, Path] = {}  # pid -> its directory; the lock's descriptor stays open for the process's life


def prepare(data_dir: Path, role: str) -> Path:
    """Give this process (and those it forks) its own metrics directory, remove abandoned ones, and point
    PROMETHEUS_MULTIPROC_DIR at it. Once per process: a second call returns the same directory."""
    if os.getpid() in _prepared:
        return _prepared[os.getpid()]
    if "prometheus_client" in sys.modules:
        log.warning("prometheus_client was imported before its metrics directory was set: this process's "
                    "metrics stay in memory, missing from a multi-process /metrics")
    root = Path(data_dir).resolve() / ROOT
    root.mkdir(parents=True, exist_ok=True)
    remove_abandoned(root)
    new = Path(tempfile.mkdtemp(prefix=NEW, dir=root))
    fd = os.open(new / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    own = root / f"{role}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    new.rename(own)
    os.environ[ENV] = str(own)
    _prepared[os.getpid()] = own
    return own


def remove_abandoned(root: Path) -> list[Path]:
    """Remove the directories under `root` whose owner is gone (their lock is free); returns them."""
    removed = []
    for folder in root.iterdir():
        if folder.is_dir() and _abandoned(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _abandoned(folder: Path) -> bool:
    try:
        if folder.name.startswith(NEW) and time.time() - folder.stat().st_mtime <= NEW_GRACE:
            return False  # being set up right now: maybe locked, maybe not yet (between its open and its flock)
        fd = os.open(folder / LOCK, os.O_RDWR)
    except FileNotFoundError:  # left half set up by a crash long ago (or gone meanwhile: removing it is harmless)
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # its owner lives
    finally:
        os.close(fd)  # (releases the lock taken just now: the folder goes next)
    return True
