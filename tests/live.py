"""A running apercu, as real processes on a free port, and a tiny HTTP client for it (stdlib only)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY_TIMEOUT = 60.0
# Roles that are not `python -m apercu <role>`: a worker started the way a Celery user starts one.
COMMANDS = {"celery-worker": ["-m", "celery", "-A", "apercu.worker", "worker", "--loglevel=INFO", "--concurrency=2"]}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """`apercu serve` (roles=["serve"]) or separate `web` and `worker` processes on one data directory."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {
            **os.environ,
            "APERCU_DATA_DIR": str(data_dir),
            "APERCU_PORT": str(self.port),
            "APERCU_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
            "APERCU_WORKER_CONCURRENCY": "2",
            "APERCU_WEB_WORKERS": "1",
            "APERCU_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.log = data_dir.parent / f"service-{self.port}.log"

    def start(self, *roles: str) -> Service:
        """Start the roles and wait until they answer: ready, and a worker beats, when one runs a worker, else
        alive."""
        self.launch(*roles)
        self._wait_ready(*(("/healthz",) if roles == ("web",) else ("/readyz", "/readyz/workers")))
        return self

    def launch(self, *roles: str) -> Service:
        """Start the roles, each in the data directory's parent as its working directory, without waiting."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            for role in roles:
                self.processes.append(
                    subprocess.Popen(
                        self.command(role), cwd=self.data_dir.parent,
                        env=self.env, stdout=log, stderr=log, start_new_session=True,
                    )
                )
        return self

    def command(self, role: str) -> list[str]:
        """The command line of `role`: this checkout's apercu (a subclass runs an installed wheel, an image...)."""
        return [sys.executable, *COMMANDS.get(role, ["-m", "apercu", role])]

    def _wait_ready(self, *probes: str) -> None:
        """Until every probe answers 200 (`/readyz/workers`: a worker beats; `/readyz` no longer waits for one)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            for proc in self.processes:
                if proc.poll() is not None:
                    raise RuntimeError(f"apercu exited with {proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if all(self.get(probe).status == 200 for probe in probes):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"apercu not ready after {READY_TIMEOUT}s:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> list[int]:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(sig)
        codes = []
        for proc in self.processes:
            try:
                codes.append(proc.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        self.processes = []
        return codes

    def crash(self, index: int) -> None:
        """SIGKILL one role's whole process group (a worker and its pool children), as a power cut would."""
        proc = self.processes.pop(index)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return Reply(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers), err.read())

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def upload(self, data: bytes, filename: str = "image", headers: dict[str, str] | None = None) -> Reply:
        body, content_type = multipart(data, filename)
        return self.request("POST", "/images", body, content_type | (headers or {}))

    def wait_final(self, image_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """The image once processing ended (success or failure), polling with ?wait=."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.get(f"/images/{image_id}?wait=5").json()
            if body["status"] in ("success", "failure") or time.monotonic() > deadline:
                return body

    def stored(self) -> list[str]:
        """The key of every stored original and thumbnail, in the data directory or in the S3 bucket."""
        url = self.env.get("APERCU_STORAGE_URL", "")
        if not url.startswith("s3://"):
            folders = [self.data_dir / "originals", self.data_dir / "thumbnails"]
            return [p.relative_to(self.data_dir).as_posix() for f in folders for p in f.rglob("*") if p.is_file()]
        import boto3

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        client = boto3.client(
            "s3", endpoint_url=self.env["APERCU_S3_ENDPOINT_URL"], aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"], region_name=self.env["AWS_DEFAULT_REGION"],
        )
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"].removeprefix(prefix).lstrip("/") for page in pages for obj in page.get("Contents", [])]

    def files_of(self, image_id: str) -> list[str]:
        """What is stored for this image (its original and thumbnails), and any file named for it on disk."""
        on_disk = [p.as_posix() for p in self.data_dir.rglob(f"*{image_id}*")]
        return [key for key in self.stored() if image_id in key] + on_disk


def multipart(data: bytes, filename: str = "image") -> tuple[bytes, dict[str, str]]:
    """An upload's body (its `file` part) and its Content-Type header."""
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def descendants(root: int) -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every living process below `root`, read from /proc."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), cmdline)
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, cmdline) in table.items():
            if ppid == parent:
                found.append((pid, ppid, cmdline))
                frontier.append(pid)
    return found


def imaging_processes(root: int) -> list[int]:
    """The worker's sandbox children: the fork server's children (see apercu.tasks.sandbox)."""
    tree = descendants(root)
    servers = {pid for pid, _, cmdline in tree if "forkserver" in cmdline}
    return [pid for pid, ppid, _ in tree if ppid in servers]


def role_process(root: int, role: str) -> int:
    """The main process of `apercu <role>` under `root` (an `apercu serve`)."""
    return next(pid for pid, _, cmdline in descendants(root) if cmdline.strip().endswith(f"-m apercu {role}"))


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names), body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += more
    raw_head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return int(status_line.split()[1]), headers, body
