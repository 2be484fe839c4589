"""Blobs in an S3 bucket: AWS, or any S3-compatible server (MinIO, SeaweedFS, Ceph...) through boto3.

S3 already keeps the store's promises: a PUT replaces an object whole (a reader sees the old or the new one,
never a mixture) and is acknowledged only once stored, so there is no temporary-file-and-rename dance here.
What an interrupted write can leave behind is an unfinished multipart upload: invisible to readers, but its
parts take space (and are billed on AWS) until aborted, which is what `clean_interrupted` does.

Credentials and region come from boto3's own sources (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, a profile, an instance role...), never from APERCU_* settings, so that secrets are handled
the way every AWS tool handles them. One client serves every thread of the process (boto3 clients are
thread-safe); its connection pool is sized for a threaded web server.

Times (`stat().modified`, `keys(older_than=...)`) are the server's LastModified, which S3 gives to the second:
a blob can look up to a second older than it is. Grace periods are minutes, so that does not matter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from apercu.storage.blobs.store import RESUMABLE_PREFIX, BlobInfo, BlobMissing

MIB = 1024 * 1024
# Streams larger than this go up in parts: a 50 MiB upload is then several requests, each retried on its own,
# instead of one long request that starts over from the first byte after a hiccup.
MULTIPART = TransferConfig(multipart_threshold=16 * MIB, multipart_chunksize=16 * MIB, max_concurrency=4)
# Error codes that mean "no such object". A HEAD has no body, so a 404 there only says "404" (and cannot tell a
# missing key from a missing bucket: `check` is what reports the latter). NoSuchBucket is deliberately absent.
MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
PROBE_KEY = ".apercu-probe"  # what `check` starts (and aborts) a multipart upload of


class S3BlobStore:
    """Blob `key` is the object `<prefix>/<key>` of `bucket` (just `<key>` when the prefix is empty)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", probe_client: Any = None) -> None:
        self.client = client
        self.probe_client = probe_client or client
        self.bucket = bucket
        self.root = f"{prefix.strip('/')}/" if prefix.strip("/") else ""

    @classmethod
    def connect(cls, bucket: str, prefix: str, endpoint_url: str | None) -> S3BlobStore:
        """A store on a new client; `endpoint_url` None means AWS itself (the region from the environment)."""
        # Pool: a web process runs up to `web_threads` requests at once, a multipart upload up to 4 parts more.
        # Timeouts are per connection attempt and per socket read, not for a whole (possibly large) transfer: a
        # 16 MiB part is acknowledged well within 10 s by a live server. While S3 is away a call gives up after
        # 3 attempts: about 3 s when connections are refused, about 35 s at worst when a server accepts and then
        # says nothing (it was 4 x 60 s); the caller's own retry (the worker's, a client's) takes it from there.
        client = _client(endpoint_url, connect_timeout=2, read_timeout=10, attempts=3, max_pool_connections=32)
        # The readiness probe must answer within seconds, even when S3 does not: short timeouts, no retries.
        probe = _client(endpoint_url, connect_timeout=2, read_timeout=5, attempts=1, max_pool_connections=2)
        return cls(client, bucket, prefix, probe)

    def put(self, key: str, source: bytes | IO[bytes], *, durable: bool = True) -> None:
        """Store `source`; returns once S3 acknowledged the whole object (bytes: one PUT; a stream, read from its
        current position: one PUT when small, a multipart upload when large), which S3 keeps durably whatever
        `durable` says."""
        if isinstance(source, bytes | bytearray | memoryview):
            self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=bytes(source))
        else:
            self.client.upload_fileobj(source, self.bucket, self._object(key), Config=MULTIPART)

    def open(self, key: str) -> IO[bytes]:
        """The object's body as a stream (botocore's StreamingBody is an io.IOBase: read, close, `with`)."""
        with _missing_as(key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
        body: IO[bytes] = response["Body"]
        return body

    def stat(self, key: str) -> BlobInfo:
        with _missing_as(key):
            head = self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        return BlobInfo(
            size=int(head["ContentLength"]),
            modified=head["LastModified"].timestamp(),
            etag=str(head["ETag"]).strip('"'),
        )

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except BlobMissing:
            return False
        return True

    def delete(self, key: str) -> None:
        """S3 answers a DELETE of a missing object with success; some compatible servers say 404: also fine."""
        try:
            with _missing_as(key):
                self.client.delete_object(Bucket=self.bucket, Key=self._object(key))
        except BlobMissing:
            pass

    def keys(self, prefix: str, older_than: float = 0.0) -> Iterator[str]:
        """Keys (without the store's prefix) starting with `prefix`, page by page as S3 lists them; with
        `older_than` > 0, only those last written more than that many seconds ago (by the server's clock)."""
        cutoff = time.time() - older_than
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._object(prefix))
        for page in pages:
            for item in page.get("Contents", ()):
                if older_than <= 0 or item["LastModified"].timestamp() < cutoff:
                    yield item["Key"][len(self.root) :]

    def url(self, key: str, expires: int) -> str | None:
        """A presigned GET URL (signed locally: no request is made, and a missing key gives a URL that 404s)."""
        params = {"Bucket": self.bucket, "Key": self._object(key)}
        url: str = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)
        return url

    def check(self) -> None:
        """Raise unless the bucket exists and we may write to it. Writing is tried by starting a multipart
        upload and aborting it: unlike a probe object, that leaves nothing behind, not even in a versioned
        bucket (where every probe PUT and DELETE would otherwise pile up as versions)."""
        try:
            self.probe_client.head_bucket(Bucket=self.bucket)
            key = self._object(PROBE_KEY)
            upload = self.probe_client.create_multipart_upload(Bucket=self.bucket, Key=key)
            self.probe_client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                message = "the bucket does not exist"
            raise RuntimeError(f"S3 bucket {self.bucket!r} is not usable: {code} {message}".strip()) from exc
        except BotoCoreError as exc:  # no connection, a timeout, no credentials...
            raise RuntimeError(f"S3 bucket {self.bucket!r} is not reachable: {exc}") from exc

    def clean_interrupted(self, older_than: float) -> int:
        """Abort the multipart uploads under the store's prefix started more than `older_than` seconds ago (by
        crashed or killed processes: a live `put` finishes or aborts its own), but resumable uploads' (which wait
        for their client for up to APERCU_UPLOAD_EXPIRY); returns how many went."""
        cutoff = time.time() - older_than
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.root)
        # Listed in full first: aborting while paging would move the ground under the paginator's markers.
        stale = [
            (upload["Key"], upload["UploadId"])
            for page in pages
            for upload in page.get("Uploads", ())
            if upload["Initiated"].timestamp() < cutoff
            and not upload["Key"].startswith(self.root + RESUMABLE_PREFIX)  # live for days: `resumable` sweeps them
        ]
        aborted = 0
        for key, upload_id in stale:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                aborted += 1
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                    raise  # NoSuchUpload: another process cleaned it (or its writer completed it) meanwhile
        return aborted

    def _object(self, key: str) -> str:
        return f"{self.root}{key}"


def _client(endpoint_url: str | None, *, attempts: int, **timeouts_and_pool: Any) -> Any:
    """A boto3 S3 client. With an endpoint (an S3-compatible server) addressing is path-style, which needs no
    wildcard DNS; AWS itself picks its own. Signatures are v4: AWS regions opened since 2014 accept nothing
    else, and boto3 would otherwise presign some URLs with the legacy v2."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": attempts},  # the first attempt included
        s3={"addressing_style": "path"} if endpoint_url else {},
        signature_version="s3v4",
        **timeouts_and_pool,
    )
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


@contextmanager
def _missing_as(key: str) -> Iterator[None]:
    """The one place where S3's ways of saying "no such object" become BlobMissing; other errors propagate."""
    try:
        yield
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in MISSING_CODES:
            raise BlobMissing(key) from exc
        raise
