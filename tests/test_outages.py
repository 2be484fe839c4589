"""A dependency that goes away is an outage, never a bug (issue 17, the worker's side): every kind of exception is
classified in `storage.outages`, and the worker's tasks retry an outage under the same lease, then give the image
back for recovery, instead of recording it as `failure`. The S3 case runs against a real SeaweedFS that is
SIGKILLed between reading the original and writing the thumbnail, and started again."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

import images
import kombu.exceptions
import pytest
import redis.exceptions
import sqlalchemy.exc
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from apercu.config import Settings
from apercu.storage import blob_keys
from apercu.storage.catalog.tables import NEVER
from apercu.storage.outages import DependencyUnavailable, classify
from apercu.tasks import TASK_NAME
from apercu.tasks.app import OUTAGE_RETRIES, RENDER_TASK, context_of, make_celery

URL = "http://127.0.0.1:9"


def _s3_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Put")


def _dbapi(kind: type[sqlalchemy.exc.DBAPIError], invalidated: bool = False) -> sqlalchemy.exc.DBAPIError:
    return kind("SELECT 1", {}, Exception("server closed the connection"), connection_invalidated=invalidated)


def _caused(exc: Exception) -> Exception:
    try:
        raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapper:
        return wrapper


@pytest.mark.parametrize(
    ("exc", "dependency"),
    [
        (EndpointConnectionError(endpoint_url=URL), "storage"),
        (ConnectionClosedError(endpoint_url=URL), "storage"),
        (ReadTimeoutError(endpoint_url=URL), "storage"),
        (ConnectTimeoutError(endpoint_url=URL), "storage"),
        (_s3_error(503, "SlowDown"), "storage"),
        (_s3_error(500, "InternalError"), "storage"),
        (_s3_error(502, "BadGateway"), "storage"),
        (_s3_error(200, "ServiceUnavailable"), "storage"),  # a compatible server's odd status: the code decides
        (OSError(errno.ENOSPC, "No space left on device"), "storage"),
        (OSError(errno.EROFS, "Read-only file system"), "storage"),
        (_dbapi(sqlalchemy.exc.OperationalError), "catalog"),
        (_dbapi(sqlalchemy.exc.InterfaceError), "catalog"),
        (_dbapi(sqlalchemy.exc.DatabaseError, invalidated=True), "catalog"),
        (sqlalchemy.exc.TimeoutError("QueuePool limit reached"), "catalog"),
        (kombu.exceptions.OperationalError("connection refused"), "broker"),
        (kombu.exceptions.ConnectionError("connection forced"), "broker"),
        (redis.exceptions.ConnectionError("connection refused"), "broker"),
        (redis.exceptions.TimeoutError("timed out"), "broker"),
        (DependencyUnavailable("catalog", "circuit open"), "catalog"),
        (_caused(EndpointConnectionError(endpoint_url=URL)), "storage"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else value,
)
def test_an_outage_names_its_dependency(exc: BaseException, dependency: str) -> None:
    assert classify(exc) == dependency


@pytest.mark.parametrize(
    "exc",
    [
        _s3_error(404, "NoSuchKey"),
        _s3_error(403, "AccessDenied"),
        NoCredentialsError(),
        _dbapi(sqlalchemy.exc.IntegrityError),
        _dbapi(sqlalchemy.exc.DatabaseError),
        kombu.exceptions.EncodeError("not JSON"),
        KeyError("a bug"),
        ValueError("a bug"),
    ],
    ids=lambda value: type(value).__name__,
)
def test_a_bug_or_a_bad_request_is_no_outage(exc: BaseException) -> None:
    assert classify(exc) is None


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """An outage is logged as one line per retry, never with a traceback."""
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.exc_text] == []


def _stored(app: Any) -> str:
    import uuid

    storage = context_of(app).processor.storage
    image_id = uuid.uuid4().hex
    storage.blobs.put(blob_keys.original(image_id), images.jpeg())
    storage.catalog.images.add(image_id, "x")
    return image_id


def test_storage_away_through_every_retry_releases_the_image_for_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Never `failure`: after the last retry the image is pending again, marked for the recovery sweep to send."""
    app = make_celery(Settings(data_dir=tmp_path / "data"))
    image_id, storage = _stored(app), context_of(app).processor.storage

    def full_disk(*_: Any, **__: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.blobs, "put", full_disk)
    with caplog.at_level(logging.WARNING):
        assert app.tasks[TASK_NAME].apply(args=[image_id]).get() == "released"
    row = storage.catalog.images.get(image_id)
    assert row.status == "pending" and row.lease_owner is None and row.enqueued_at == NEVER
    assert row.attempts == 1  # retries under the same lease count no attempt
    retries = [r for r in caplog.records if "storage unavailable" in r.getMessage()]
    assert len(retries) == OUTAGE_RETRIES and all(r.levelno == logging.WARNING for r in retries)
    assert [r.getMessage().rsplit("retry ", 1)[1] for r in retries] == [  # backing off (eager: not waited)
        f"{n + 1} in {2**n} s" for n in range(OUTAGE_RETRIES)
    ]
    _no_tracebacks(caplog)


def test_a_render_while_storage_is_away_is_retried_then_left_to_be_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_celery(Settings(data_dir=tmp_path / "data"))
    image_id, storage = _stored(app), context_of(app).processor.storage
    assert app.tasks[TASK_NAME].apply(args=[image_id]).get() == "claimed"

    def away(*_: Any, **__: Any) -> None:
        raise EndpointConnectionError(endpoint_url=URL)

    monkeypatch.setattr(storage.blobs, "put", away)
    with caplog.at_level(logging.WARNING):
        assert app.tasks[RENDER_TASK].apply(args=[image_id, 64, "webp"]).get() == "released"
    assert len([r for r in caplog.records if "storage unavailable" in r.getMessage()]) == OUTAGE_RETRIES
    _no_tracebacks(caplog)


def test_s3_killed_between_reading_the_original_and_writing_the_thumbnail(
    tmp_path: Path, own_seaweedfs: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's lost image: the S3 server is SIGKILLed just before the thumbnail's PUT (the original already
    read), and is back when the task's retry reads the original again. The retry holds the same lease, and the
    image ends in `success`, with one warning line for the outage and no traceback."""
    settings = Settings(
        data_dir=tmp_path / "data", storage_url=own_seaweedfs.storage_url(), s3_endpoint_url=own_seaweedfs.endpoint_url
    )
    app = make_celery(settings)
    image_id, storage = _stored(app), context_of(app).processor.storage
    put, open_blob, seen = storage.blobs.put, storage.blobs.open, []

    def put_after_a_kill(key: str, source: Any) -> None:
        if not seen:
            own_seaweedfs.stop()  # SIGKILL: the original was read, the thumbnail is not written
            seen.append(storage.catalog.images.get(image_id))
        put(key, source)

    def open_after_a_restart(key: str) -> Any:
        if seen and len(seen) == 1:  # the retry: back under the same lease, then the server comes back
            seen.append(storage.catalog.images.get(image_id))
            own_seaweedfs.restart()
        return open_blob(key)

    monkeypatch.setattr(storage.blobs, "put", put_after_a_kill)
    monkeypatch.setattr(storage.blobs, "open", open_after_a_restart)
    with caplog.at_level(logging.WARNING):
        assert app.tasks[TASK_NAME].apply(args=[image_id]).get() == "claimed"
    killed, retried = seen
    assert killed.status == retried.status == "processing" and killed.lease_owner == retried.lease_owner
    row = storage.catalog.images.get(image_id)
    assert row.status == "success" and row.attempts == 1 and row.error is None
    assert storage.blobs.exists(row.thumbnail["key"])
    outage = [r.getMessage() for r in caplog.records if "storage unavailable" in r.getMessage()]
    assert len(outage) == 1 and image_id in outage[0], outage
    _no_tracebacks(caplog)
