"""The embedded default (SQLite catalog, files in the data directory) when its disk fills or turns read-only
(issue 17): a full disk is 507 `insufficient_storage`, a read-only data directory a 503 naming what failed to be
written (`storage_unavailable` for an upload, whose file is written first; `catalog_unavailable` where SQLite's
write is the first to fail), never a 500, nothing half-done (no file without its row, no row without its file),
and uploads are accepted again by the same app once space or writability is back.

The data directory is a small tmpfs of the test's own: mounting needs root (CI runs as root); elsewhere the
tests skip, visibly."""

from __future__ import annotations

import errno
import io
import logging
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import images
import pytest
import sqlalchemy.exc
from conftest import REQUIRE_SERVICES, parse_json, unavailable

from apercu.api import create_app
from apercu.config import Settings
from apercu.storage import blob_keys
from apercu.storage.outages import classify, out_of_space

SIZE = "2m"
MAX_UPLOADS = 200  # more than a 2 MiB disk holds of the small JPEGs below
RECOVERY_TIMEOUT = 10.0


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test alone, unmounted afterwards."""
    point = tmp_path / "disk"
    point.mkdir()
    try:
        mount("-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(point))
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or str(exc)
        unavailable(f"cannot mount a tmpfs here (needs root): {detail!r}", REQUIRE_SERVICES)
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True, timeout=30)


@pytest.fixture
def disk_app(small_disk: Path) -> Any:
    """The embedded default on the small disk, with the access gate's free-space floor off: the disk really
    fills, and what the storage layers answer then is what is tested (the gate's 507 is test_access's)."""
    settings = Settings(data_dir=small_disk / "data", min_free_mb=0, queue=f"test-{uuid.uuid4().hex[:8]}")
    app = create_app(settings)
    app.config["TESTING"] = True
    return app


def upload(client: Any, data: bytes) -> Any:
    return client.post("/images", data={"file": (io.BytesIO(data), "a.jpg")})


def consistent(service: Any) -> set[str]:
    """Every row has its original and every original its row; the ids."""
    rows = {record.id for record in service.storage.catalog.images.page(10 * MAX_UPLOADS)}
    files = {blob_keys.image_id_of(key) for key in service.storage.blobs.keys(blob_keys.ORIGINALS)}
    assert rows == files, f"rows without a file: {rows - files}; files without a row: {files - rows}"
    return rows


def assert_refused(response: Any, status: int, codes: set[str]) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    code: str = parse_json(response)["error"]["code"]
    assert code in codes, code
    return code


def accepted_again(client: Any, data: bytes) -> float:
    """Upload until one is 202 (each refusal a 503 or 507, never a 500): the seconds it took."""
    started = time.monotonic()
    while (response := upload(client, data)).status_code != 202:
        assert response.status_code in (503, 507), response.get_data(as_text=True)
        assert time.monotonic() - started < RECOVERY_TIMEOUT, "no upload accepted once the disk was back"
        time.sleep(0.1)
    return time.monotonic() - started


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]


def _sqlite_error(message: str, code: int) -> sqlalchemy.exc.OperationalError:
    """SQLite's error as SQLAlchemy raises it: wrapped, and raised from the driver's."""
    driver = sqlite3.OperationalError(message)
    driver.sqlite_errorcode = code
    try:
        raise sqlalchemy.exc.OperationalError("INSERT", {}, driver) from driver
    except sqlalchemy.exc.OperationalError as wrapped:
        return wrapped


@pytest.mark.parametrize(("exc", "dependency", "full"), [
    (OSError(errno.ENOSPC, "No space left on device"), "storage", True),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "storage", True),
    (OSError(errno.EROFS, "Read-only file system"), "storage", False),
    (_sqlite_error("database or disk is full", sqlite3.SQLITE_FULL), "catalog", True),
    (_sqlite_error("attempt to write a readonly database", sqlite3.SQLITE_READONLY), "catalog", False),
])
def test_a_full_disk_is_its_dependencys_outage_told_apart(exc: BaseException, dependency: str, full: bool) -> None:
    """`storage.outages` is the one place that says so: the dependency whose outage it is, and whether it is a
    full disk (507) rather than one that is away (503)."""
    assert classify(exc) == dependency
    assert out_of_space(exc) is full


def test_full_disk_is_507_and_uploads_resume_once_space_is_back(
    disk_app: Any, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Small uploads until the disk is full: 202s, then 507s (whichever of SQLite and the file write met the
    full disk first), a larger upload too; no 500, rows and files match; reads still answer (a full disk is no
    outage of reads); once the disk grows, the same app accepts uploads again."""
    client, service = disk_app.test_client(), disk_app.extensions["apercu"]
    small, large = images.jpeg((160, 100)), images.jpeg((1200, 900))
    statuses = []
    with caplog.at_level(logging.INFO):
        while len(statuses) < MAX_UPLOADS and (response := upload(client, small)).status_code == 202:
            statuses.append(202)
        assert 202 in statuses, "not one upload fitted on the disk"
        assert_refused(response, 507, {"insufficient_storage"})
        assert_refused(upload(client, large), 507, {"insufficient_storage"})
        stored = consistent(service)
        assert len(stored) == len(statuses)
        some = next(iter(stored))
        assert client.get(f"/images/{some}").status_code == 200
        assert client.get("/images").status_code == 200

        mount("-o", "remount,size=8m", str(small_disk))
        recovered = accepted_again(client, large)
    assert len(consistent(service)) == len(stored) + 1
    print(f"{len(statuses)} uploads filled {SIZE}; accepted again {recovered:.2f} s after the disk grew")
    no_tracebacks(caplog)


def test_read_only_data_dir_is_503_and_uploads_resume_once_writable(
    disk_app: Any, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The data directory remounted read-only: an upload is 503 storage_unavailable (its file is the first thing
    it writes) and a delete (in a second web process, whose store is not known down) 503 catalog_unavailable
    (its row is the first thing it removes); neither leaves anything half-done. Remounted read-write, the same
    app accepts uploads again within a probe interval or so."""
    client, service = disk_app.test_client(), disk_app.extensions["apercu"]
    other = create_app(service.settings)
    data, image_id = images.jpeg((160, 100)), uuid.uuid4().hex
    # An image stored and recorded as an upload is (not queued: the broker's connection is left unopened). A file
    # system with files open for writing cannot be remounted read-only (a kernel that remounts it after an I/O
    # error does so anyway): the catalogs' connections are closed first, and reopen by themselves.
    service.storage.put_original(image_id, io.BytesIO(data))
    service.storage.catalog.images.add(image_id, "a.jpg", None)
    for app in (disk_app, other):
        app.extensions["apercu"].storage.catalog.engine.dispose()
    mount("-o", "remount,ro", str(small_disk))
    try:
        with caplog.at_level(logging.INFO):
            assert_refused(upload(client, data), 503, {"storage_unavailable"})
            assert_refused(other.test_client().delete(f"/images/{image_id}"), 503, {"catalog_unavailable"})
            assert client.get("/healthz").status_code == 200
    finally:
        mount("-o", "remount,rw", str(small_disk))
    assert consistent(service) == {image_id}
    recovered = accepted_again(client, data)
    assert len(consistent(service)) == 2
    print(f"accepted again {recovered:.2f} s after the data directory was writable")
    no_tracebacks(caplog)
