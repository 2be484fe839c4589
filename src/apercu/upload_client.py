"""`apercu upload`: send files and folders to a running apercu, then wait for what it made of them.

A client of the HTTP API and nothing else (the standard library's http.client; no Flask, Celery or storage), so
that it runs wherever the files are. Each file is streamed from disk as a multipart body with a Content-Length,
never read whole, so a folder of large TIFFs costs a few chunks of memory per thread. Every upload carries an
`Idempotency-Key` derived from the file (host, absolute path, size, mtime): running the same command again
after an interruption, within the server's `APERCU_IDEMPOTENCY_TTL`, gets the images of the first run back
instead of second copies. 503 and 429 (backpressure) are retried after their Retry-After, connection failures
a bounded number of times with a backoff; both are safe because of that key.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import hashlib
import http.client
import json
import math
import os
import select
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO
from urllib.parse import urlsplit

from apercu import __version__

CHUNK = 256 * 1024  # bytes read from disk and sent at a time
CONNECT_TIMEOUT = 10.0  # seconds to open a connection (and send a request's head)
IO_TIMEOUT = 60.0  # seconds any later socket operation may take: above the API's longest ?wait
MAX_WAIT = 30  # the API's longest ?wait=
MIN_POLL = 0.25  # seconds between two polls answered at once with the same status (a server ignoring ?wait=)
CONNECT_RETRIES = 4  # a request that cannot get through is tried again after 0.5, 1, 2, 4 s...
PROBE_RETRIES = 2  # ...but the first contact gives up sooner: a wrong URL should not take long to say so
BUSY_RETRIES = 30  # 503/429 answers (backpressure) retried after their Retry-After...
MAX_RETRY_AFTER = 30.0  # ...of at most this long each
RETRY_STATUSES = {429, 502, 503, 504}
FINAL = {"success", "failure"}
DEFAULT_URL = "http://127.0.0.1:5000"


class Fatal(Exception):
    """Nothing more can work (the service refuses the API key, or cannot be reached at all): stop, exit 2."""


class Unreachable(Exception):
    """A request that did not get through after its retries."""


class LocalFileError(Exception):
    """The file on disk could not be read (or changed size while sent): not the network's fault, not retried."""


class Interrupted(Exception):
    """The run is stopping (Ctrl-C or a fatal answer): a worker gives up what it was doing."""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def message(self) -> str:
        """The API's error message (`{"error": {"message"}}`), else the start of whatever the body is."""
        body = self.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return str(body["error"].get("message", ""))
        text = self.body[:200].decode("utf-8", "replace").strip()
        return text or http.client.responses.get(self.status, "")


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


# The multipart body


def quote_filename(name: str) -> str:
    """The filename parameter as browsers, curl and urllib3 send it (WHATWG HTML: UTF-8, with CR, LF and `"`
    percent-encoded), which Werkzeug and the API's own parser read back."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text.translate({10: "%0A", 13: "%0D", 34: "%22"})


def envelope(filename: str, boundary: str) -> tuple[bytes, bytes]:
    """What goes before and after the file's bytes in a one-part `multipart/form-data` body (field `file`).
    Kept apart from the file so that the body's length is known without reading it, and the file is sent
    straight from disk."""
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{quote_filename(filename)}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return head.encode("utf-8"), f"\r\n--{boundary}--\r\n".encode("ascii")


def stream_body(
    fp: IO[bytes], size: int, head: bytes, tail: bytes, sent: Callable[[int], None] = lambda n: None
) -> Generator[bytes, None, None]:
    """The body in pieces of at most CHUNK bytes: exactly `size` bytes of the file between head and tail, as
    the Content-Length promised. `sent` counts the file's bytes once each piece has gone (the byte bar)."""
    yield head
    left = size
    while left:
        try:
            chunk = fp.read(min(CHUNK, left))
        except OSError as exc:
            raise LocalFileError(f"cannot read: {exc.strerror or exc}") from exc
        if not chunk:
            raise LocalFileError("the file became shorter while it was being sent")
        yield chunk
        sent(len(chunk))
        left -= len(chunk)
    yield tail


# HTTP


def _readable(sock: socket.socket) -> bool:
    """poll(), not select(): select() refuses descriptors past 1023."""
    readable = select.poll()
    readable.register(sock, select.POLLIN)
    return bool(readable.poll(0))


class Client:
    """One keep-alive connection per thread to the service at `url` (which may have a path prefix, behind a
    proxy), each request carrying the API key when there is one."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {url!r}")
        try:
            self.port = parts.port
        except ValueError:
            raise ValueError(f"not a valid port in {url!r}") from None
        self.url, self.tls, self.host = url, parts.scheme == "https", parts.hostname
        self.prefix = parts.path.rstrip("/")
        self.headers = {"User-Agent": f"apercu-upload/{__version__}"}
        if api_key:
            self.headers["X-API-Key"] = api_key
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        """This thread's connection; one the server closed while it sat idle is replaced before it is used,
        rather than failing a request half-sent."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            kind = http.client.HTTPSConnection if self.tls else http.client.HTTPConnection
            conn = self._local.conn = kind(self.host, self.port, timeout=CONNECT_TIMEOUT)
            with self._lock:
                self._opened.append(conn)
        elif conn.sock is not None and _readable(conn.sock):
            conn.close()
        return conn

    def exchange(
        self, method: str, target: str, headers: dict[str, str] | None = None,
        body: Generator[bytes, None, None] | None = None, length: int = 0,
    ) -> Reply:
        """One request and its whole answer. Raises OSError or http.client.HTTPException when the exchange
        fails (the connection is then closed, and the next request opens a new one)."""
        conn = self._connection()
        try:
            conn.putrequest(method, self.prefix + target, skip_accept_encoding=True)
            for name, value in {**self.headers, **(headers or {})}.items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(length))
            conn.endheaders()
            assert conn.sock is not None
            conn.sock.settimeout(IO_TIMEOUT)
            whole = body is None or _send(conn, body)
            response = conn.getresponse()
            reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        except BaseException:
            conn.close()
            raise
        finally:
            if body is not None:
                body.close()
        if not whole:
            conn.close()  # the server answered before taking the whole body: this connection is done
        return reply

    def abort(self) -> None:
        """Shut every connection down, so that a thread blocked on a long ?wait= or a slow send notices the
        stop now rather than when the server answers."""
        with self._lock:
            socks = [conn.sock for conn in self._opened]
        for sock in socks:
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def probe(self) -> None:
        """GET / once before anything is sent, so that a wrong URL or key is one clear message, not an error per
        file."""
        try:
            reply = retrying(lambda: self.exchange("GET", "/"), threading.Event(), PROBE_RETRIES)
        except Unreachable as exc:
            raise Fatal(f"cannot reach {self.url}: {exc}") from None
        check_key(reply, self)
        body = reply.json()
        if reply.status != 200 or not isinstance(body, dict) or "endpoints" not in body:
            raise Fatal(f"{self.url} does not look like an apercu service (GET / answered {reply.status})")


def _send(conn: http.client.HTTPConnection, body: Iterator[bytes]) -> bool:
    """Send the body; False when the server answered before having it all (a 413 decided from the
    Content-Length, a refusal, a close): that answer is then read instead of pushing the rest of the file
    into a connection nobody reads."""
    assert conn.sock is not None
    try:
        for chunk in body:
            if _readable(conn.sock):
                return False
            conn.send(chunk)
    except OSError:
        if conn.sock is None or not _readable(conn.sock):
            raise
        return False  # reset mid-body, but an answer came first: that answer is the news
    return True


def check_key(reply: Reply, client: Client, stop: threading.Event | None = None) -> None:
    """401/403 mean the API key is missing or wrong: the same for every file, so the run stops (other threads
    at once, through `stop`, before they start another file)."""
    if reply.status in (401, 403):
        if stop is not None:
            stop.set()
        given = "X-API-Key" in client.headers
        hint = "check --api-key or APERCU_API_KEY" if given else "give one with --api-key or APERCU_API_KEY"
        raise Fatal(f"the service refused the request: {reply.message()} ({hint})")


def describe(exc: BaseException) -> str:
    """A connection failure in a few words a person can act on."""
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return "the connection was closed by the other end"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def retry_after(reply: Reply, default: float) -> float:
    """The answer's Retry-After in seconds (the delta form the API sends), capped; `default` without one."""
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(reply.headers.get("retry-after", ""))))
    except ValueError:
        return default


def backoff(failures: int) -> float:
    return float(min(8.0, 0.5 * 2 ** (failures - 1)))


def retrying(call: Callable[[], Reply], stop: threading.Event, connect_retries: int = CONNECT_RETRIES) -> Reply:
    """`call` until it gets an answer that is not "busy, try later": connection failures up to
    `connect_retries` times more, 503/429/502/504 up to BUSY_RETRIES times after their Retry-After. The last
    busy answer is returned as it is; a connection that never worked raises Unreachable."""
    failures = busy = 0
    while True:
        try:
            reply = call()
        except (OSError, http.client.HTTPException) as exc:
            failures += 1
            if failures > connect_retries:
                raise Unreachable(describe(exc)) from exc
            delay = backoff(failures)
        else:
            busy += reply.status in RETRY_STATUSES
            if reply.status not in RETRY_STATUSES or busy > BUSY_RETRIES:
                return reply
            delay = retry_after(reply, backoff(busy))
        if stop.wait(delay):
            raise Interrupted


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


def upload_file(client: Client, path: Path, progress: Progress, stop: threading.Event) -> Outcome:
    """POST one file (retried as `retrying` says) and classify the answer."""
    outcome = Outcome(path)
    try:
        reply = _post(client, path, progress, stop)
    except LocalFileError as exc:
        outcome.status, outcome.error = "error", str(exc)
        return outcome
    except Unreachable as exc:
        outcome.status, outcome.error = "error", f"upload failed: {exc}"
        return outcome
    finally:
        progress.file_done()
    check_key(reply, client, stop)
    body = reply.json()
    accepted = reply.status == 202 or (reply.status == 200 and isinstance(body, dict) and body.get("duplicate"))
    if accepted and isinstance(body, dict) and "id" in body:  # 200: the service had these bytes (dedup)
        outcome.id, outcome.status = body["id"], body.get("status", "pending")
        outcome.replayed = reply.headers.get("idempotent-replayed") == "true" or reply.status == 200
    elif 400 <= reply.status < 500:
        outcome.status, outcome.error = "refused", f"{reply.message()} ({reply.status})"
    else:
        outcome.status, outcome.error = "error", f"the service answered {reply.status}: {reply.message()}"
    return outcome


def _post(client: Client, path: Path, progress: Progress, stop: threading.Event) -> Reply:
    """The POST, tried as often as `retrying` allows: each try opens the file again and sends it from the
    start (a body cannot be resumed), under the same Idempotency-Key, so a try whose answer was lost and the
    one after it make one image."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise LocalFileError(f"cannot read: {exc.strerror or exc}") from exc
    boundary = uuid.uuid4().hex
    head, tail = envelope(path.name, boundary)
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Idempotency-Key": idempotency_key(path, stat),
    }
    counted = 0

    def count(n: int) -> None:
        nonlocal counted
        counted += n
        progress.add(n)

    def attempt() -> Reply:
        nonlocal counted
        if stop.is_set():
            raise Interrupted
        progress.add(-counted)  # a retry sends the file again: the bar goes back by what the failed try sent
        counted = 0
        try:
            fp = path.open("rb")
        except OSError as exc:
            raise LocalFileError(f"cannot read: {exc.strerror or exc}") from exc
        with fp:
            body = stream_body(fp, stat.st_size, head, tail, count)
            return client.exchange("POST", "/images", headers, body, len(head) + stat.st_size + len(tail))

    try:
        return retrying(attempt, stop)
    finally:
        progress.unsent(stat.st_size - counted)


def await_result(
    client: Client, outcome: Outcome, deadline: float, keep_metadata: bool, stop: threading.Event
) -> None:
    """GET the image with ?wait= until it is final or the deadline passes; the outcome takes its last state."""
    while True:
        asked, before = time.monotonic(), outcome.status
        remaining = deadline - asked
        wait = min(MAX_WAIT, max(0, math.ceil(remaining)))
        target = f"/images/{outcome.id}?wait={wait}"
        try:
            reply = retrying(functools.partial(client.exchange, "GET", target), stop)
        except Unreachable as exc:
            outcome.status, outcome.error = "error", f"could not get the result: {exc}"
            return
        check_key(reply, client, stop)
        if reply.status == 404:
            outcome.status, outcome.error = "failure", "no longer on the service (deleted?)"
            return
        body = reply.json()
        if reply.status != 200 or not isinstance(body, dict):
            outcome.status, outcome.error = "error", f"the service answered {reply.status}: {reply.message()}"
            return
        outcome.status, outcome.error = body["status"], body.get("error")
        outcome.metadata = body.get("metadata") if keep_metadata else None
        if outcome.status in FINAL:
            return
        if time.monotonic() >= deadline:
            outcome.error = f"still {outcome.status} when the --timeout ran out"
            return
        if outcome.status == before and time.monotonic() - asked < MIN_POLL and stop.wait(MIN_POLL):
            raise Interrupted


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
        client = Client(options.url, options.api_key)
        client.probe()
    except (ValueError, Fatal) as exc:
        print(f"apercu upload: {exc}", file=err)
        return 2
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, options.concurrency), thread_name_prefix="upload") as pool:
        try:
            outcomes = _upload_all(pool, client, files, options, stop)
            _await_all(pool, client, [o for o in outcomes if o.id], options, stop)
        except Fatal as exc:
            _halt(pool, client, stop)
            print(f"apercu upload: {exc}", file=err)
            return 2
        except KeyboardInterrupt:
            _halt(pool, client, stop)
            print("\napercu upload: interrupted; run the same command again to finish (files already uploaded "
                  "are not uploaded twice)", file=err)
            return 130
    report(outcomes, options, out)
    return exit_code(outcomes)


def _halt(pool: ThreadPoolExecutor, client: Client, stop: threading.Event) -> None:
    """Stop quickly: queued files are dropped, running requests are cut, and no retry starts."""
    stop.set()
    pool.shutdown(wait=False, cancel_futures=True)
    client.abort()


def _upload_all(
    pool: ThreadPoolExecutor, client: Client, files: list[Path], options: Options, stop: threading.Event
) -> list[Outcome]:
    total = sum(_size(p) for p in files)
    with Progress(options.progress, total, "B", "upload", files=len(files)) as bar:
        futures = [pool.submit(upload_file, client, path, bar, stop) for path in files]
        _settle(futures)
    return [f.result() for f in futures]


def _await_all(
    pool: ThreadPoolExecutor, client: Client, accepted: list[Outcome], options: Options, stop: threading.Event
) -> None:
    """Wait for the accepted images, all at once (as many at a time as there are threads), against one
    deadline: `--timeout` seconds from now."""
    if not accepted:
        return
    deadline = time.monotonic() + options.timeout
    with Progress(options.progress, len(accepted), "image", "processing") as bar:

        def one(outcome: Outcome) -> None:
            await_result(client, outcome, deadline, options.metadata, stop)
            bar.add(1)

        _settle([pool.submit(one, outcome) for outcome in accepted])


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


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run_from_args(args: argparse.Namespace) -> int:
    options = Options(
        paths=args.paths, url=args.url, patterns=args.pattern, concurrency=args.concurrency, timeout=args.timeout,
        api_key=args.api_key, as_json=args.json, metadata=args.metadata,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    try:
        return run(options)
    except KeyboardInterrupt:  # before the uploads began (during the first contact)
        return 130
