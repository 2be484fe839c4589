"""`apercu upload`: send files and folders to a running apercu, then wait for what it made of them.

Built on the client library (`apercu_client`, httpx only: no Flask, Celery or storage), which streams each file
from disk with a Content-Length (never read whole), retries 503/429 after their Retry-After and failed connections
with a backoff, and honours HTTPS_PROXY and the like. This module adds what a command needs around it: finding the
files, several at a time, a key per file, the progress bars, the report and the exit code. Every upload carries an
`Idempotency-Key` derived from the file (host, absolute path, size, mtime): running the same command again after
an interruption, within the server's `APERCU_IDEMPOTENCY_TTL`, gets the images of the first run back instead of
second copies, and the retries are safe for the same reason.

Files above `--resumable-above` MB go by tus (the service's `/uploads/`, through `Client.upload_resumable`): a
chunk at a time, a cut connection resumed where the service stands, and the upload's URL kept in a resume store
(`--resume-store`, by default in the user's cache folder) until the image exists, so that the same command run
again after the process was killed sends the rest of a big file, not all of it. The idempotency key goes with the
creation, so even a lost store does not make a second image.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import hashlib
import json
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from apercu_client import (
    ApiError,
    AuthenticationError,
    Client,
    Closed,
    NotFound,
    Retries,
    SourceError,
    Unreachable,
)

from apercu import __version__

PROBE_RETRIES = Retries(connect=2)  # the first contact gives up sooner: a wrong URL should not take long to say so
DEFAULT_URL = "http://127.0.0.1:5000"
MB = 1_000_000


class Fatal(Exception):
    """Nothing more can work (the service refuses the API key, or cannot be reached at all): stop, exit 2."""


class Interrupted(Exception):
    """The run is stopping (Ctrl-C or a fatal answer): a worker gives up what it was doing."""


@dataclass
class Outcome:
    """What became of one file: refused or errored at upload, else the service's last word on its image."""

    path: Path
    id: str | None = None
    status: str = "pending"  # then success / failure, or refused / error here, or still pending at the timeout
    error: str | None = None
    metadata: dict[str, Any] | None = None
    replayed: bool = False

    def line(self, with_metadata: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"path": str(self.path), "id": self.id, "status": self.status, "error": self.error}
        if with_metadata:
            out["metadata"] = self.metadata
        return out


@dataclass
class Options:
    paths: list[Path]
    url: str = DEFAULT_URL
    patterns: list[str] = field(default_factory=list)
    concurrency: int = 4
    timeout: float = 300.0
    api_key: str | None = None
    as_json: bool = False
    metadata: bool = False
    progress: bool = True
    resumable_above: int = 8 * MB  # bytes: larger files go by tus (0: every file)
    resume: bool = True  # False: every file by POST /images, as before resumable uploads
    resume_store: Path | None = None  # None: the library's default (the user's cache folder)

    def resumable(self, size: int) -> bool:
        return self.resume and size > self.resumable_above


# Finding the files


def collect_files(paths: list[Path], patterns: list[str]) -> list[Path]:
    """Files named on the command line as they are; folders walked recursively, in name order, skipping hidden
    files and folders (a `.git`, `.DS_Store`, editors' swap files) and, with patterns, files whose name matches
    none of them (case-insensitively: `*.jpg` is meant to take IMG_0001.JPG too). Symlinked folders are not
    followed, so a link loop cannot make the walk endless."""
    found: list[Path] = []
    for root in paths:
        if not root.is_dir():
            found.append(root)
            continue
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(folder, n) for n in sorted(names) if not n.startswith(".") and _matches(n, patterns)]
    return found


def _matches(name: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(name.lower(), p.lower()) for p in patterns)


def idempotency_key(path: Path, stat: os.stat_result) -> str:
    """The same file on the same machine gives the same key, so a re-run is answered with the first run's
    image; a file changed since (size, mtime) is a new upload. The host is in it because two machines' files at
    the same path are different files."""
    ident = f"{socket.gethostname()}\0{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return "apercu-upload-" + hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:40]


# The service


def connect(options: Options, retries: Retries | None = None) -> Client:
    """A client of the service at `--url`, with the API key; ValueError for a URL that cannot be one."""
    parts = urlsplit(options.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL: {options.url!r}")
    try:
        parts.port  # noqa: B018 (raises for a port that is not one)
    except ValueError:
        raise ValueError(f"not a valid port in {options.url!r}") from None
    return Client(options.url, api_key=options.api_key, retries=retries or Retries(),
                  resume_store=options.resume_store, headers={"User-Agent": f"apercu-upload/{__version__}"})


def probe(options: Options) -> None:
    """GET / once before anything is sent, so that a wrong URL or key is one clear message, not an error per file."""
    with connect(options, PROBE_RETRIES) as client:
        try:
            info = client.index()
        except Unreachable as exc:
            raise Fatal(f"cannot reach {options.url}: {exc}") from None
        except AuthenticationError as exc:
            raise refused_key(exc, options) from None
        except ApiError as exc:
            raise Fatal(f"{options.url} does not look like an apercu service (GET / answered {exc.status})") from None
        if "endpoints" not in info.raw:
            raise Fatal(f"{options.url} does not look like an apercu service (GET / answered 200)")


def refused_key(exc: ApiError, options: Options) -> Fatal:
    """401/403 mean the API key is missing or wrong: the same for every file, so the run stops."""
    hint = "check --api-key or APERCU_API_KEY" if options.api_key else "give one with --api-key or APERCU_API_KEY"
    return Fatal(f"the service refused the request: {exc.message} ({hint})")


# Progress


class Progress:
    """A tqdm bar on stderr (rate, ETA) when wanted: people watching a terminal get one, logs and pipes get
    nothing at all. Workers report from several threads, hence the lock."""

    def __init__(self, enabled: bool, total: int, unit: str, desc: str, files: int = 0) -> None:
        from tqdm import tqdm

        self._lock = threading.Lock()
        self._files, self._done = files, 0
        self._bar = tqdm(
            total=total, unit=unit, desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True,
            unit_scale=unit == "B", unit_divisor=1024 if unit == "B" else 1000, postfix=self._files_done(),
        )

    def add(self, n: int) -> None:
        with self._lock:
            self._bar.update(n)

    def unsent(self, n: int) -> None:
        """Bytes that will never go (a file refused from its Content-Length): out of the total, so the bar
        still ends at 100 % and its rate and ETA stay about bytes actually sent."""
        with self._lock:
            if n and not self._bar.disable:
                self._bar.total -= n
                self._bar.refresh()

    def file_done(self) -> None:
        with self._lock:
            self._done += 1
            self._bar.set_postfix_str(self._files_done(), refresh=False)

    def _files_done(self) -> str | None:
        return f"{self._done}/{self._files} files" if self._files else None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self._bar.close()


# Uploading one file, waiting for one image


def upload_file(client: Client, path: Path, progress: Progress, options: Options, stop: threading.Event) -> Outcome:
    """Upload one file (the library retries as it may) and classify the answer. The bar follows the bytes sent,
    going back by what a failed attempt sent when the library tries again."""
    outcome, sent, size = Outcome(path), 0, 0

    def told(done: int, total: int) -> None:
        nonlocal sent
        progress.add(done - sent)
        sent = done

    try:
        if stop.is_set():
            raise Interrupted
        stat = _stat(path)
        size = stat.st_size
        key = idempotency_key(path, stat)
        if options.resumable(size):
            upload = client.upload_resumable(path, idempotency_key=key, progress=told)
        else:
            upload = client.upload(path, idempotency_key=key, progress=told)
    except SourceError as exc:
        outcome.status, outcome.error = "error", str(exc)
    except Unreachable as exc:
        outcome.status, outcome.error = "error", f"upload failed: {exc}"
    except AuthenticationError as exc:
        stop.set()
        raise refused_key(exc, options) from None
    except ApiError as exc:
        outcome.status, outcome.error = _refused(exc)
    except Closed:
        raise Interrupted from None
    else:
        outcome.id, outcome.status, outcome.replayed = upload.id, upload.status, upload.replayed or upload.duplicate
    finally:
        progress.file_done()
        progress.unsent(size - sent)
    return outcome


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}") from exc


def _refused(exc: ApiError) -> tuple[str, str]:
    if 400 <= exc.status < 500:
        return "refused", f"{exc.message} ({exc.status})"
    return "error", f"the service answered {exc.status}: {exc.message}"


def await_result(
    client: Client, outcome: Outcome, deadline: float, options: Options, stop: threading.Event
) -> None:
    """Wait for the image until it is final or the deadline passes; the outcome takes its last state."""
    assert outcome.id is not None
    try:
        image = client.wait(outcome.id, max(0.0, deadline - time.monotonic()))
    except NotFound:
        outcome.status, outcome.error = "failure", "no longer on the service (deleted?)"
        return
    except Unreachable as exc:
        outcome.status, outcome.error = "error", f"could not get the result: {exc}"
        return
    except AuthenticationError as exc:
        stop.set()
        raise refused_key(exc, options) from None
    except ApiError as exc:
        outcome.status, outcome.error = "error", f"the service answered {exc.status}: {exc.message}"
        return
    except Closed:
        raise Interrupted from None
    outcome.status, outcome.error = image.status, image.error
    outcome.metadata = image.metadata if options.metadata else None
    if not image.final:
        outcome.error = f"still {outcome.status} when the --timeout ran out"


# Running several at a time


class Workers:
    """`count` daemon threads running what is submitted. Daemons, so that a run stopped by Ctrl-C or a refused key
    returns at once: requests still in flight (a long ?wait=, a large file) are dropped with the process instead
    of being waited for; they are safe to drop, as every upload is idempotent."""

    def __init__(self, count: int) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._count = count
        for n in range(count):
            threading.Thread(target=self._work, name=f"upload-{n}", daemon=True).start()

    def submit(self, call: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((future, call))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # noqa: BLE001 (handed to whoever waits on the future)
                future.set_exception(exc)

    def stop(self, futures: list[Future[Any]]) -> None:
        """Drop what has not started; the threads end once the queue is through."""
        for future in futures:
            future.cancel()
        for _ in range(self._count):
            self._queue.put(None)


# The run


def run(options: Options, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Upload everything, wait for the results, report. 0: all succeeded; 1: an image failed, was refused or
    is still processing; 2: usage, connection or API key errors (130 when interrupted)."""
    missing = [p for p in options.paths if not p.exists()]
    if missing:
        print(f"apercu upload: no such file or directory: {', '.join(map(str, missing))}", file=err)
        return 2
    files = collect_files(options.paths, options.patterns)
    if not files:
        print("apercu upload: no files to upload", file=err)
        return 0
    try:
        probe(options)
        client = connect(options)
    except (ValueError, Fatal) as exc:
        print(f"apercu upload: {exc}", file=err)
        return 2
    stop, workers = threading.Event(), Workers(max(1, options.concurrency))
    futures: list[Future[Any]] = []
    try:
        outcomes = _upload_all(workers, futures, client, files, options, stop)
        _await_all(workers, futures, client, [o for o in outcomes if o.id], options, stop)
    except Fatal as exc:
        print(f"apercu upload: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        print("\napercu upload: interrupted; run the same command again to finish (files already uploaded "
              "are not uploaded twice)", file=err)
        return 130
    finally:
        stop.set()
        workers.stop(futures)
        client.close()  # a retry waiting in another thread gives up now
    report(outcomes, options, out)
    return exit_code(outcomes)


def _upload_all(
    workers: Workers, futures: list[Future[Any]], client: Client, files: list[Path], options: Options,
    stop: threading.Event,
) -> list[Outcome]:
    total = sum(_size(p) for p in files)
    with Progress(options.progress, total, "B", "upload", files=len(files)) as bar:
        mine = [workers.submit(functools.partial(upload_file, client, path, bar, options, stop)) for path in files]
        futures += mine
        _settle(mine)
    return [f.result() for f in mine]


def _await_all(
    workers: Workers, futures: list[Future[Any]], client: Client, accepted: list[Outcome], options: Options,
    stop: threading.Event,
) -> None:
    """Wait for the accepted images, all at once (as many at a time as there are threads), against one
    deadline: `--timeout` seconds from now."""
    if not accepted:
        return
    deadline = time.monotonic() + options.timeout
    with Progress(options.progress, len(accepted), "image", "processing") as bar:

        def one(outcome: Outcome) -> None:
            await_result(client, outcome, deadline, options, stop)
            bar.add(1)

        mine = [workers.submit(functools.partial(one, outcome)) for outcome in accepted]
        futures += mine
        _settle(mine)


def _settle(futures: list[Future[Any]]) -> None:
    """Wait for all; a Fatal (a refused key) is raised as soon as it comes. Tasks that gave up because the run
    is stopping (Interrupted) are not news: the reason they stopped is."""
    for future in as_completed(futures):
        exc = future.exception()
        if exc is not None and not isinstance(exc, Interrupted):
            raise exc


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
def report(outcomes: list[Outcome], options: Options, out: TextIO) -> None:
    """JSON Lines (one per file, in the order files were found), or what went wrong and the counts."""
    if options.as_json:
        for outcome in outcomes:
            print(json.dumps(outcome.line(options.metadata), ensure_ascii=False), file=out)
        return
    for outcome in outcomes:
        if outcome.status not in ("success",):
            print(f"{outcome.status}: {outcome.path}: {outcome.error}", file=out)
    print(summary_line(outcomes), file=out)


def summary_line(outcomes: list[Outcome]) -> str:
    count = {s: sum(o.status == s for o in outcomes) for s in ("success", "failure", "refused", "error")}
    pending = len(outcomes) - sum(count.values())
    replayed = sum(o.replayed for o in outcomes)
    files = f"{len(outcomes)} file" + ("s" if len(outcomes) != 1 else "")
    line = (f"{files}: {count['success']} success, {count['failure']} failure, "
            f"{count['refused']} refused, {count['error']} errors")
    if pending:
        line += f", {pending} still processing"
    if replayed:
        line += f" ({replayed} uploaded before: the service answered with the earlier upload)"
    return line


def exit_code(outcomes: list[Outcome]) -> int:
    if any(o.status == "error" for o in outcomes):
        return 2
    return 0 if all(o.status == "success" for o in outcomes) else 1


# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, help="files or folders (searched recursively)")
    parser.add_argument("--url", default=os.environ.get("APERCU_URL") or DEFAULT_URL,
                        help=f"the service (default: APERCU_URL, else {DEFAULT_URL})")
    parser.add_argument("--pattern", action="append", default=[], metavar="GLOB",
                        help="in folders, only files whose name matches (case-insensitive; repeatable)")
    parser.add_argument("--concurrency", type=_positive_int, default=4, metavar="N",
                        help="uploads at a time (default 4)")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="seconds to wait for processing once the uploads are done (default 300)")
    parser.add_argument("--api-key", default=os.environ.get("APERCU_API_KEY"), metavar="KEY",
                        help="sent as X-API-Key (default: APERCU_API_KEY)")
    parser.add_argument("--json", action="store_true", help="JSON Lines: one {path, id, status, error} per file")
    parser.add_argument("--metadata", action="store_true", help="with --json: each image's metadata too")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    parser.add_argument("--resumable-above", type=_megabytes, default=8 * MB, metavar="MB",
                        help="files larger than this go by resumable upload (tus), resumed after a cut or a "
                             "re-run (default 8; 0: every file)")
    parser.add_argument("--no-resume", action="store_true", help="no resumable uploads: every file in one request")
    parser.add_argument("--resume-store", type=Path, default=None, metavar="FILE",
                        help="where resumable uploads are remembered between runs "
                             "(default: $XDG_CACHE_HOME/apercu/uploads.json)")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _megabytes(raw: str) -> int:
    value = float(raw)
    if not 0 <= value < 1e9:  # (not NaN, not infinite)
        raise argparse.ArgumentTypeError("must be a number of MB, 0 or more")
    return int(value * MB)


def run_from_args(args: argparse.Namespace) -> int:
    options = Options(
        paths=args.paths, url=args.url, patterns=args.pattern, concurrency=args.concurrency, timeout=args.timeout,
        api_key=args.api_key, as_json=args.json, metadata=args.metadata,
        progress=not args.no_progress and sys.stderr.isatty(), resumable_above=args.resumable_above,
        resume=not args.no_resume, resume_store=args.resume_store,
    )
    try:
        return run(options)
    except KeyboardInterrupt:  # before the uploads began (during the first contact)
        return 130
