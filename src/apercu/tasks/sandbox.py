"""Imaging in a child process: whatever a file does to a decoder, the worker survives it and knows at once.

Each worker thread owns one long-lived child, forked from a fork server that has already imported Pillow and
libvips (so a fresh child costs milliseconds, and never inherits the worker's threads, locks or connections).
A call hands the child the original's open file (its descriptor goes over the pipe, so the worker never reads
or copies the bytes: the child reads them straight from the page cache) and waits for the answer:
- `ProcessingFailed` raised in the child is raised here, as the file's failure;
- the child dying (SIGKILL, a segfault in a decoder, the OOM killer) is `ChildDied`, seen the moment its end
  of the pipe closes: the caller retries or gives up, no lease has to run out first;
- a call that outlives its time limit gets its child killed and raises `TimeLimitExceeded`.
The child runs under a memory limit, so a decompression bomb that slips past the header checks ends as the
file's failure ("needs more memory than ...") or, in C code, as a dead child, never as a swapping host.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import traceback
from collections.abc import Callable, Mapping
from multiprocessing import reduction
from typing import IO, Any

from apercu.imaging.analyse import (
    LIMITS,
    Analysis,
    Options,
    ProcessingFailed,
    analyse,
    render_rendition,
    render_variant,
)
from apercu.imaging.renditions.options import Rendition
from apercu.imaging.renditions.render import Rendered
from apercu.imaging.thumbnail import Thumbnail

MIB = 1024 * 1024
OUT_OF_MEMORY = 75  # the child's exit code when it ran out of memory
PR_SET_PDEATHSIG = 1



class ChildDied(Exception):
    """The imaging process died while working on a file (a crash, a kill, the OOM killer)."""


class TimeLimitExceeded(Exception):
    """The imaging process was killed because the call took longer than its time limit."""


class ImagingBug(Exception):
    """Imaging raised something other than ProcessingFailed: a bug of ours. The message holds its traceback."""


CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["apercu.tasks.sandbox"])


def _child_main(conn: multiprocessing.connection.Connection, memory_limit: int) -> None:
    """Serve calls until the parent goes away; each answer is ("ok", result), ("failed", ProcessingFailed) or
    ("bug", traceback). Running out of memory anywhere (even reading the file) ends the child with
    OUT_OF_MEMORY: its pipe may hold half a message, and the parent reports it as the file's failure."""
    _die_with_parent()
    if memory_limit > 0:
        # RLIMIT_DATA counts memory actually mapped for writing; address space reserved by allocators and
        # libvips' threads (RLIMIT_AS) would trip a limit on machines with many cores long before real use.
        resource.setrlimit(resource.RLIMIT_DATA, (memory_limit, memory_limit))
    try:
        _serve(conn)
    except MemoryError:
        os._exit(OUT_OF_MEMORY)


def _rendition(
    data: bytes, options: Options, rendition: Rendition, max_pixels: int, focal_point: Mapping[str, float] | None
) -> Rendered:
    return render_rendition(data, rendition, options, max_output_pixels=max_pixels, focal_point=focal_point)


# What a child can be asked to do: imaging entry points taking (data, options, *arguments).
OPERATIONS: dict[str, Callable[..., Any]] = {"analyse": analyse, "variant": render_variant, "rendition": _rendition}


def _serve(conn: multiprocessing.connection.Connection) -> None:
    while True:
        try:
            operation, options, arguments = conn.recv()
            data = _read_all(reduction.recv_handle(conn))
        except (EOFError, OSError):
            return  # the worker stopped or died: nothing more to do
        try:
            answer: tuple[str, Any] = ("ok", OPERATIONS[operation](data, options, *arguments))
        except ProcessingFailed as exc:
            answer = ("failed", exc)
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - reported to the parent, which records it; the child lives on
            answer = ("bug", traceback.format_exc())
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        try:
            conn.send((*answer, peak))
        except (EOFError, OSError):
            return
        except Exception:  # noqa: BLE001 - an answer that cannot be pickled is a bug of ours, not a crash
            conn.send(("bug", traceback.format_exc(), peak))


def _die_with_parent() -> None:
    """SIGKILL when the fork server goes (it goes when the worker dies): a child stuck in a decoder must not
    outlive the worker that would have enforced its time limit."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: the child still ends when it next reads from its closed pipe


def _read_all(fd: int) -> bytes:
    with open(fd, "rb") as original:
        return original.read()


class Sandbox:
    """One child process and the pipe to it; not thread-safe: each worker thread has its own."""

    def __init__(self, memory_limit: int) -> None:
        self.memory_limit = memory_limit
        self.peak_rss = 0  # the child's high-water mark, in bytes, as of its last answer
        self._process: Any = None
        self._conn: multiprocessing.connection.Connection | None = None

    def analyse(self, original: IO[bytes], options: Options, time_limit: float) -> Analysis:
        """`imaging.analyse` of the open file `original`, in the child."""
        result: Analysis = self._call("analyse", original, options, time_limit)
        return result

    def render_variant(
        self, original: IO[bytes], options: Options, time_limit: float, size: int, fmt: str
    ) -> Thumbnail:
        """`imaging.render_variant` of the open file `original`, in the child."""
        result: Thumbnail = self._call("variant", original, options, time_limit, size, fmt)
        return result

    def render_rendition(
        self, original: IO[bytes], options: Options, time_limit: float, rendition: Rendition, max_pixels: int,
        focal_point: Mapping[str, float] | None,
    ) -> Rendered:
        """`imaging.render_rendition` of the open file `original`, in the child."""
        result: Rendered = self._call("rendition", original, options, time_limit, rendition, max_pixels, focal_point)
        return result

    def _call(
        self, operation: str, original: IO[bytes], options: Options, time_limit: float, *arguments: Any
    ) -> Any:
        conn = self._ensure_child()
        try:
            conn.send((operation, options, arguments))
            reduction.send_handle(conn, original.fileno(), self._process.pid)
            if not conn.poll(time_limit):
                self.close()
                raise TimeLimitExceeded(f"processing took longer than {time_limit:g} s")
            status, payload, self.peak_rss = conn.recv()
        except (EOFError, OSError) as exc:
            code, how = self._bury()
            if code == OUT_OF_MEMORY:
                limit = self.memory_limit // MIB
                raise ProcessingFailed(
                    f"the image needs more than the {limit} MiB of memory an imaging process may use", reason=LIMITS
                ) from exc
            raise ChildDied(how) from exc
        if status == "failed":
            raise payload
        if status == "bug":
            raise ImagingBug(payload)
        return payload

    def _ensure_child(self) -> multiprocessing.connection.Connection:
        if self._conn is None or not self._process.is_alive():
            self.close()
            parent, child = CONTEXT.Pipe()
            self._process = CONTEXT.Process(
                target=_child_main, args=(child, self.memory_limit), name="apercu-imaging", daemon=True
            )
            self._process.start()
            child.close()
            self._conn = parent
        return self._conn

    def _bury(self) -> tuple[int | None, str]:
        """Reap the dead child: its exit code, and how it died in words."""
        process = self._process
        self.close()
        code = process.exitcode if process is not None else None
        if code is not None and code < 0:
            return code, f"the imaging process was killed by signal {-code}"
        return code, f"the imaging process exited with code {code}"

    def close(self) -> None:
        """Stop the child, if any (it is killed: it may be stuck in a decoder)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=5)
            self._process = None
