"""Servers of a test's own, to kill and bring back (issue 17's outages): a PostgreSQL cluster and a Redis, each on
a free port in a temporary directory. The session's shared servers must never be killed; these may be."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from seaweed import free_ports

START_TIMEOUT = 30.0


class ServerUnavailable(RuntimeError):
    """This machine cannot run such a server (its binaries are missing)."""


class OwnPostgres:
    """A PostgreSQL cluster of a test's own (initdb + pg_ctl in a temporary directory, on a free port, run as the
    `postgres` user when the tests run as root, which initdb refuses): `kill()` SIGKILLs its postmaster, `start()`
    brings it back on the same port and data."""

    def __init__(self, directory: Path) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not bins:
            raise ServerUnavailable("no PostgreSQL server binaries in /usr/lib/postgresql")
        self.bin, self.directory, self.data = bins[-1].parent, directory, directory / "db"
        self.port = free_ports(1)[0]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N")

    def _run(self, tool: str, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, str(self.bin / tool), *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w", "start")

    def kill(self) -> None:
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):  # its children leave once they see the postmaster gone
            while True:
                os.kill(pid, 0)
                time.sleep(0.05)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")


class OwnRedis:
    """A redis-server of a test's own on a free port, nothing persisted: `kill()` SIGKILLs it, `start()` brings it
    back on the same port (empty: what a broker that lost its memory looks like)."""

    def __init__(self, directory: Path) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise ServerUnavailable("no redis-server on PATH")
        self.directory, self.port = directory, free_ports(1)[0]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.binary is not None
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the child keeps it open
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket_to(self.port) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def kill(self) -> None:
        """SIGKILL it (and wait for it to be gone); `start()` brings it back. Also how it is stopped at the end."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    stop = kill  # nothing of it is kept: stopping it is killing it


def socket_to(port: int) -> contextlib.closing[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
    return contextlib.closing(sock)


@contextlib.contextmanager
def blackhole(port: int | None = None) -> Iterator[int]:
    """A loopback port (a free one, or `port`: a killed server's) where connecting never completes: it listens
    with a backlog of one that a first connection fills and nobody accepts, so the kernel drops every further
    SYN, as a firewall or a machine gone would. Yields the port."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port or 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        yield int(listener.getsockname()[1])
