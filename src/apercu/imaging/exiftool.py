"""A long-lived `exiftool -stay_open` process, asked about one file's bytes at a time, that can never hang us.

ExifTool is a Perl program: a run per file costs 90-150 ms (Perl starting, then loading the modules of the
file's format), a file asked of a running process 3-15 ms. So one process (20-35 MB) is kept for as long as its
owner lives (in a worker, the imaging child of one worker thread) and fed one file at a time through its
`-stay_open True -@ -` protocol: arguments on stdin, `-execute<N>`, then its output on stdout up to the line
`{ready<N>}`.

A hostile file must not hang or crash its owner through it, so every answer is bounded:
- in time: past its deadline the process is killed (`ExifToolTimeout`) and the next call starts a new one;
- in size: more than `max_output` bytes of answer kills it too (`ExifToolOverflow`): nothing is kept in memory
  beyond that, however much it prints;
- in lifetime: an exiftool that dies (mid-answer or between files) is `ExifToolDied` for the file that killed
  it, and replaced on the next call; one found dead before a file is replaced at once and the file asked again.
On Linux the process is started through `setpriv --pdeathsig KILL`, so that it dies with the thread that
started it: an imaging child SIGKILLed at its time limit takes its exiftool with it (exiftool itself waits for
more arguments forever once its stdin closes, and a file that keeps it busy would keep it busy).

The bytes reach exiftool by name, as `-stay_open` wants: an anonymous memory file (memfd) that exiftool
inherits and opens as `/dev/fd/N`, emptied after each answer, so no copy of an upload ever lands on a disk or
outlives a killed process; elsewhere, a file in a private temporary directory.

Not thread-safe; one per thread or behind a lock. An object inherited through fork() is not used by the child:
it starts its own process and spool (the parent's pipes and memory file are the parent's).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

MAX_OUTPUT = 256 * 1024
READ_CHUNK = 65536


class ExifToolError(Exception):
    """This file's question got no answer; the message says why, for the image's warnings."""


class ExifToolMissing(ExifToolError):
    """No `exiftool` on PATH."""


class ExifToolTimeout(ExifToolError):
    """The answer did not come in time; the process was killed."""


class ExifToolDied(ExifToolError):
    """The process exited before answering."""


class ExifToolOverflow(ExifToolError):
    """The answer was larger than allowed; the process was killed rather than read to the end."""


class _Spool:
    """Where a file's bytes wait for exiftool to open them by name (see the module docstring)."""

    def __init__(self) -> None:
        self._dir: str | None = None
        self.inherited: tuple[int, ...]
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("apercu-exiftool", os.MFD_CLOEXEC)
            self.path, self.inherited = f"/dev/fd/{self.fd}", (self.fd,)
        else:  # pragma: no cover - not Linux
            self._dir = tempfile.mkdtemp(prefix="apercu-exiftool-")
            self.path, self.inherited = os.path.join(self._dir, "image"), ()
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)

    def fill(self, data: bytes) -> None:
        os.ftruncate(self.fd, 0)
        view, offset = memoryview(data), 0
        while offset < len(view):
            offset += os.pwrite(self.fd, view[offset:], offset)

    def empty(self) -> None:
        os.ftruncate(self.fd, 0)

    def close(self, remove: bool = True) -> None:
        """Free it; `remove=False` in a forked child, whose parent still uses the same directory."""
        os.close(self.fd)
        if self._dir is not None and remove:  # pragma: no cover - not Linux
            shutil.rmtree(self._dir, ignore_errors=True)


class ExifTool:
    """One exiftool process, started on first use with `arguments` as its common arguments (`-common_args`)."""

    def __init__(self, arguments: Sequence[str], max_output: int = MAX_OUTPUT) -> None:
        self.arguments = list(arguments)
        self.max_output = max_output
        self.starts = 0  # processes started so far (tests and logs)
        self._pid = os.getpid()
        self._spool: _Spool | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._number = 0

    @property
    def process_id(self) -> int | None:
        """The running exiftool's pid, if one runs (for this process: see the module docstring on fork)."""
        self._disown_if_forked()
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def execute(self, data: bytes, timeout: float) -> bytes:
        """exiftool's output for `data` (without the ready line); raises an ExifToolError subclass otherwise."""
        deadline = time.monotonic() + timeout
        self._disown_if_forked()
        try:
            if self._spool is None:
                self._spool = _Spool()
            self._spool.fill(data)
            return self._ask(self._spool.path, deadline, timeout)
        except OSError as exc:  # no memory file, no pipe, no process: this file goes without
            self._kill()
            raise ExifToolError(f"exiftool could not be asked: {exc}") from exc
        finally:
            if self._spool is not None:
                with contextlib.suppress(OSError):
                    self._spool.empty()  # the bytes are not kept (memory) between files

    def _ask(self, path: str, deadline: float, timeout: float) -> bytes:
        for _ in range(2):  # a second time only when the process was found dead before this file
            process = self._running()
            self._number += 1
            try:
                assert process.stdin is not None
                process.stdin.write(f"{path}\n-execute{self._number}\n".encode())
                process.stdin.flush()
            except OSError:
                self._kill()
                continue
            try:
                return self._answer(process, self._number, deadline, timeout)
            except ExifToolError:
                self._kill()
                raise
        raise ExifToolDied("exiftool exits as soon as it starts")

    def _answer(self, process: subprocess.Popen[bytes], number: int, deadline: float, timeout: float) -> bytes:
        """Everything up to `{ready<number>}`, read as it comes under the deadline and size bounds. The ready line
        counts only on a line of its own: ExifTool's JSON never starts a line with it, and a value cannot hold a
        raw newline (it escapes them)."""
        assert process.stdout is not None
        fd, marker = process.stdout.fileno(), b"{ready%d}\n" % number
        received = bytearray()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise ExifToolTimeout(f"exiftool took longer than {timeout:g} s")
                chunk = os.read(fd, READ_CHUNK)
                if not chunk:
                    raise ExifToolDied(f"exiftool exited ({_how(process)}) before answering")
                received += chunk
                if received.endswith(marker) and (len(received) == len(marker) or received[-len(marker) - 1] == 10):
                    return bytes(received[: -len(marker)])
                if len(received) > self.max_output + len(marker):
                    raise ExifToolOverflow(f"exiftool's answer is larger than {self.max_output // 1024} KiB")

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._kill()
        executable = shutil.which("exiftool")
        if executable is None:
            raise ExifToolMissing("exiftool is not installed (not on PATH)")
        command = [executable, "-stay_open", "True", "-@", "-", "-common_args", *self.arguments]
        setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        if setpriv is not None:
            command = [setpriv, "--pdeathsig", "KILL", "--", *command]
        assert self._spool is not None
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            pass_fds=self._spool.inherited, close_fds=True,
        )
        self.starts += 1
        return self._process

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    def _disown_if_forked(self) -> None:
        """In a child forked from our owner: let go of the parent's process and spool without touching them."""
        if self._pid == os.getpid():
            return
        process, spool = self._process, self._spool
        self._pid, self._process, self._spool = os.getpid(), None, None
        if spool is not None:
            spool.close(remove=False)
        for stream in (process.stdin, process.stdout) if process is not None else ():
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()  # this process's copies of the pipes; the parent's stay open

    def close(self) -> None:
        """Stop the process (killed: it holds nothing worth a goodbye) and free the spool."""
        self._disown_if_forked()
        self._kill()
        if self._spool is not None:
            self._spool.close()
            self._spool = None


def _how(process: subprocess.Popen[bytes]) -> str:
    try:
        code = process.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return "its output closed"
    return f"killed by signal {-code}" if code < 0 else f"code {code}"
