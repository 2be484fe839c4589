"""One contract, every blob store: the promises of `storage.blobs.BlobStore`, checked on each implementation.

Stores are opened the way the service opens them (`open_blob_store` on an APERCU_STORAGE_URL):
- local:       file:///<tmp>/blobs
- s3:          s3://<fresh bucket>/            on the session's SeaweedFS
- s3-prefixed: s3://<fresh bucket>/apercu/test (a store sharing its bucket with other things), for the tests
               where the prefix makes a difference (`@with_prefix`): naming, listing, deleting, cleaning.
The tests after the contract are S3's own: where objects land, multipart leftovers, a missing bucket.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from apercu.config import Settings
from apercu.storage.blobs import BlobInfo, BlobMissing, BlobStore, open_blob_store
from apercu.storage.blobs.s3 import S3BlobStore

MIB = 1024 * 1024
KINDS = ["local", "s3"]
S3_KINDS = ["s3", "s3-prefixed"]
PREFIX = "apercu/test"
# Each S3 test costs a fifth of a second (SeaweedFS grows a volume on a new bucket's first write), so the prefixed
# store only runs where the prefix changes something.
with_prefix = pytest.mark.parametrize("kind", [*KINDS, "s3-prefixed"])


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if kind == "local":
        return open_blob_store(Settings(data_dir=tmp_path / "data", storage_url=f"file://{tmp_path}/blobs"))
    seaweedfs = request.getfixturevalue("seaweedfs")
    url = seaweedfs.storage_url(prefix=PREFIX if kind == "s3-prefixed" else "")
    return open_blob_store(
        Settings(data_dir=tmp_path / "data", storage_url=url, s3_endpoint_url=seaweedfs.endpoint_url)
    )


def read(store: BlobStore, key: str) -> bytes:
    with store.open(key) as stream:
        return stream.read()


def every_key(store: BlobStore) -> list[str]:
    """Every key of every kind (what the service lists is always under a kind: `keys("")` is not asked for)."""
    return sorted([*store.keys("originals/"), *store.keys("thumbnails/")])


class OneWayStream(io.RawIOBase):
    """A stream that cannot seek, like a request body read straight off the socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


# The contract.


@with_prefix
def test_bytes_round_trip(store: BlobStore) -> None:
    store.put("originals/ab12", b"\x00original bytes\xff")
    assert read(store, "originals/ab12") == b"\x00original bytes\xff"
    with store.open("originals/ab12") as stream:  # read in pieces, as a copy loop does
        assert stream.read(4) == b"\x00ori"
        assert stream.read() == b"ginal bytes\xff"


def test_empty_blob(store: BlobStore) -> None:
    store.put("thumbnails/ab12/128.jpg", b"")
    assert read(store, "thumbnails/ab12/128.jpg") == b""
    assert store.stat("thumbnails/ab12/128.jpg").size == 0


@pytest.mark.parametrize("source", ["file", "bytesio", "one-way"])
def test_stream_round_trip(store: BlobStore, tmp_path: Path, source: str) -> None:
    data = os.urandom(300_000)
    if source == "file":
        (tmp_path / "upload").write_bytes(data)
        with open(tmp_path / "upload", "rb") as stream:
            store.put("originals/ab12", stream)
    elif source == "bytesio":
        store.put("originals/ab12", io.BytesIO(data))
    else:
        store.put("originals/ab12", io.BufferedReader(OneWayStream(data)))
    assert read(store, "originals/ab12") == data


@pytest.mark.parametrize("source", ["file", "bytesio"])
def test_stream_is_read_from_its_current_position(store: BlobStore, tmp_path: Path, source: str) -> None:
    """What comes before the position is not part of the blob (a header already consumed, say): a store that
    links or copies the whole file, or rewinds the stream, would keep it."""
    (tmp_path / "upload").write_bytes(b"HEADER--payload after the header")
    stream = open(tmp_path / "upload", "rb") if source == "file" else io.BytesIO((tmp_path / "upload").read_bytes())
    with stream:
        stream.seek(8)
        store.put("originals/ab12", stream)
    assert read(store, "originals/ab12") == b"payload after the header"
    assert store.stat("originals/ab12").size == len(b"payload after the header")


def test_large_stream_round_trips_byte_exact(store: BlobStore, tmp_path: Path) -> None:
    """Past S3's multipart threshold (16 MiB), and not a whole number of parts."""
    data = os.urandom(20 * MIB + 12345)
    (tmp_path / "large").write_bytes(data)
    with open(tmp_path / "large", "rb") as stream:
        store.put("originals/large", stream)
    digest = hashlib.sha256()
    with store.open("originals/large") as stream:
        while chunk := stream.read(MIB):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert store.stat("originals/large").size == len(data)


def test_overwrite_replaces_content_and_etag(store: BlobStore) -> None:
    store.put("thumbnails/ab12/256.jpg", b"first version")
    first = store.stat("thumbnails/ab12/256.jpg")
    store.put("thumbnails/ab12/256.jpg", b"other version")  # same size: the ETag must not be just the size
    second = store.stat("thumbnails/ab12/256.jpg")
    store.put("thumbnails/ab12/256.jpg", b"a third, longer version")
    third = store.stat("thumbnails/ab12/256.jpg")
    assert read(store, "thumbnails/ab12/256.jpg") == b"a third, longer version"
    assert len({first.etag, second.etag, third.etag}) == 3
    assert (second.size, third.size) == (13, 23)


def test_a_file_put_at_a_stored_key_replaces_it(store: BlobStore, tmp_path: Path) -> None:
    """A whole file on the store's own file system is linked in place, which an existing key would refuse: it is
    then stored as any other source, replacing the blob, and the file itself is left as it was."""
    store.put("originals/ab12", b"first version")
    (tmp_path / "upload").write_bytes(b"the second, from a file")
    with open(tmp_path / "upload", "r+b") as stream:
        store.put("originals/ab12", stream)
    assert read(store, "originals/ab12") == b"the second, from a file"
    assert (tmp_path / "upload").read_bytes() == b"the second, from a file"


def test_stat(store: BlobStore) -> None:
    before = time.time()
    store.put("originals/ab12", b"twelve bytes")
    info = store.stat("originals/ab12")
    assert isinstance(info, BlobInfo)
    assert info.size == 12
    # S3 gives LastModified to the second (truncated): a blob can look up to a second older than it is.
    assert before - 2 <= info.modified <= time.time() + 1
    assert info.etag and '"' not in info.etag
    assert store.stat("originals/ab12") == info  # nothing changed, nothing differs


@with_prefix
def test_missing_key(store: BlobStore) -> None:
    with pytest.raises(BlobMissing):
        store.open("originals/never")
    with pytest.raises(BlobMissing):
        store.stat("originals/never")
    assert store.exists("originals/never") is False
    store.delete("originals/never")  # not an error
    assert list(store.keys("originals/")) == []


@with_prefix
def test_delete(store: BlobStore) -> None:
    store.put("originals/ab12", b"doomed")
    store.put("originals/ab123", b"a neighbour")
    assert store.exists("originals/ab12") is True
    store.delete("originals/ab12")
    assert store.exists("originals/ab12") is False
    with pytest.raises(BlobMissing):
        store.open("originals/ab12")
    assert list(store.keys("originals/")) == ["originals/ab123"]
    store.delete("originals/ab12")  # twice: still fine


@with_prefix
def test_keys_lists_exactly_what_is_under_a_prefix(store: BlobStore) -> None:
    written = [
        "originals/ab",
        "originals/abc",
        "thumbnails/ab/128.jpg",
        "thumbnails/ab/256.webp",
        "thumbnails/abc/128.jpg",
    ]
    for key in written:
        store.put(key, key.encode())
    assert sorted(store.keys("thumbnails/ab/")) == ["thumbnails/ab/128.jpg", "thumbnails/ab/256.webp"]
    assert sorted(store.keys("thumbnails/abc/")) == ["thumbnails/abc/128.jpg"]
    assert sorted(store.keys("originals/")) == ["originals/ab", "originals/abc"]
    assert sorted(store.keys("originals/ab")) == ["originals/ab", "originals/abc"]  # a string prefix: hence the /
    assert list(store.keys("thumbnails/zz/")) == []
    assert every_key(store) == sorted(written)
    assert [read(store, key) for key in every_key(store)] == [key.encode() for key in sorted(written)]


@with_prefix
def test_keys_older_than(store: BlobStore) -> None:
    store.put("originals/old", b"1")
    time.sleep(0.4)
    store.put("originals/new", b"2")
    assert sorted(store.keys("originals/", older_than=0)) == ["originals/new", "originals/old"]
    assert list(store.keys("originals/", older_than=60)) == []  # all fresh
    # `old` is at least 0.4 s old; `new` may or may not look older than 0.3 s (S3's times are to the second).
    assert "originals/old" in set(store.keys("originals/", older_than=0.3))


def test_modified_is_when_put_not_when_the_source_was(store: BlobStore, tmp_path: Path) -> None:
    """A blob stored from a file written an hour ago is fresh: the orphan sweep must not take it for an old
    leftover (which a store that links the file in place, keeping its times, would make it look like)."""
    (tmp_path / "upload").write_bytes(b"staged long ago")
    an_hour_ago = time.time() - 3600
    os.utime(tmp_path / "upload", (an_hour_ago, an_hour_ago))
    with open(tmp_path / "upload", "rb") as stream:
        store.put("originals/ab12", stream)
    assert store.stat("originals/ab12").modified > time.time() - 60
    assert list(store.keys("originals/", older_than=60)) == []


def test_concurrent_writes_are_atomic(store: BlobStore) -> None:
    """Writers replacing one blob and a reader reading it: the reader only ever sees one whole value."""
    values = [bytes([n]) * 300_000 for n in range(4)]
    store.put("originals/ab12", values[0])
    seen: list[bytes] = []
    writing = [threading.Thread(target=_put_times, args=(store, value, 5)) for value in values]
    for thread in writing:
        thread.start()
    while any(thread.is_alive() for thread in writing):
        seen.append(read(store, "originals/ab12"))
    for thread in writing:
        thread.join()
    assert seen and all(data in values for data in seen)
    assert read(store, "originals/ab12") in values
    assert every_key(store) == ["originals/ab12"]


def _put_times(store: BlobStore, value: bytes, times: int) -> None:
    for _ in range(times):
        store.put("originals/ab12", value)


@with_prefix
def test_url(store: BlobStore, kind: str) -> None:
    """Local files have no URL; an S3 object's presigned URL serves its bytes to anyone holding it."""
    store.put("thumbnails/ab12/256.jpg", b"thumbnail bytes")
    url = store.url("thumbnails/ab12/256.jpg", 60)
    if kind == "local":
        assert url is None
        return
    assert url is not None and url.startswith("http")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"thumbnail bytes"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(store.url("thumbnails/ab12/nope.jpg", 60) or "", timeout=10)
    assert missing.value.code == 404


@with_prefix
def test_check_passes_and_leaves_nothing(store: BlobStore) -> None:
    store.check()
    assert every_key(store) == []
    assert store.clean_interrupted(0) == 0  # nothing half-written left behind either


@with_prefix
def test_clean_interrupted_keeps_what_was_written(store: BlobStore) -> None:
    store.put("originals/ab12", b"kept")
    removed = store.clean_interrupted(0)
    assert isinstance(removed, int) and removed == 0
    assert read(store, "originals/ab12") == b"kept"


# S3's own.


@pytest.mark.parametrize("kind", S3_KINDS)
def test_s3_clean_interrupted_aborts_old_multipart_uploads(store: Any, seaweedfs: Any) -> None:
    client = seaweedfs.client()
    client.create_multipart_upload(Bucket=store.bucket, Key=f"{store.root}originals/crashed")
    outside = store.root != ""
    if outside:  # not the store's: another prefix of a shared bucket
        client.create_multipart_upload(Bucket=store.bucket, Key="elsewhere/upload")
    assert store.clean_interrupted(3600) == 0  # too young to be a leftover: maybe still being written
    assert len(_uploads(client, store.bucket)) == 1 + outside
    assert store.clean_interrupted(0) == 1
    assert _uploads(client, store.bucket) == (["elsewhere/upload"] if outside else [])


def test_s3_check_leaves_no_trace(seaweedfs: Any, s3_bucket: str) -> None:
    store = S3BlobStore.connect(s3_bucket, "apercu", seaweedfs.endpoint_url)
    store.check()
    store.check()
    assert seaweedfs.client().list_objects_v2(Bucket=s3_bucket).get("Contents", []) == []
    assert _uploads(seaweedfs.client(), s3_bucket) == []


@pytest.mark.parametrize("kind", ["s3-prefixed"])
def test_s3_listings_follow_pages(store: Any) -> None:
    """Long listings come in pages (1000 keys, or uploads, each on AWS): make them pages of 2 and check that
    every page is read. SeaweedFS pages multipart uploads by upload id alone, with no NextKeyMarker."""
    pages = {"ListObjectsV2": 0, "ListMultipartUploads": 0}

    def small_pages(params: dict[str, Any], model: Any, **_: Any) -> None:
        pages[model.name] += 1
        params["MaxKeys" if model.name == "ListObjectsV2" else "MaxUploads"] = 2

    for operation in pages:
        store.client.meta.events.register(f"provide-client-params.s3.{operation}", small_pages)
    for n in range(5):
        store.put(f"originals/ab{n}", b"x")
        store.client.create_multipart_upload(Bucket=store.bucket, Key=f"{store.root}originals/up{n}")
    assert sorted(store.keys("originals/")) == [f"originals/ab{n}" for n in range(5)]
    assert store.clean_interrupted(0) == 5
    assert pages == {"ListObjectsV2": 3, "ListMultipartUploads": 3}


def _uploads(client: Any, bucket: str) -> list[str]:
    return sorted(upload["Key"] for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def test_s3_objects_are_prefix_slash_key(seaweedfs: Any, s3_bucket: str) -> None:
    """`<prefix>/<key>` (no leading slash without a prefix), and a store sees nothing outside its prefix, not
    even a neighbour whose name merely starts with the same letters."""
    tenant = S3BlobStore.connect(s3_bucket, "tenant", seaweedfs.endpoint_url)
    neighbour = S3BlobStore.connect(s3_bucket, "/tenant-b/", seaweedfs.endpoint_url)
    whole = S3BlobStore.connect(s3_bucket, "", seaweedfs.endpoint_url)
    tenant.put("originals/1", b"one")
    neighbour.put("originals/2", b"two")
    assert sorted(whole.keys("")) == ["tenant-b/originals/2", "tenant/originals/1"]
    assert list(tenant.keys("")) == ["originals/1"]
    assert not tenant.exists("originals/2")
    assert seaweedfs.client().get_object(Bucket=s3_bucket, Key="tenant/originals/1")["Body"].read() == b"one"
    assert whole.stat("tenant-b/originals/2").etag == neighbour.stat("originals/2").etag


def test_s3_check_fails_on_a_missing_bucket(seaweedfs: Any) -> None:
    store = S3BlobStore.connect("no-such-bucket-here", "apercu", seaweedfs.endpoint_url)
    with pytest.raises(RuntimeError, match="no-such-bucket-here"):
        store.check()


def test_s3_check_fails_on_an_unreachable_server(seaweedfs: Any) -> None:
    """A readiness probe says so quickly when S3 does not answer, rather than after minutes of retries."""
    from seaweed import free_ports

    store = S3BlobStore.connect("bucket", "", f"http://127.0.0.1:{free_ports(1)[0]}")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="bucket"):
        store.check()
    assert time.monotonic() - started < 5


def test_s3_missing_bucket_is_not_a_missing_blob(seaweedfs: Any) -> None:
    """A store pointed at the wrong bucket must not look like an empty one: GET says NoSuchBucket, which is
    an error, not BlobMissing (a HEAD only says 404 and cannot tell; `check` is there for that)."""
    from botocore.exceptions import ClientError

    store = S3BlobStore.connect("no-such-bucket-here", "", seaweedfs.endpoint_url)
    with pytest.raises(ClientError, match="NoSuchBucket"):
        store.open("originals/ab12")
