"""`apercu upload` against a real service, its multipart streaming and retries against a scripted one, and the
progress bars of `upload` and `inspect` on a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import apercu_client
import httpx
import images
import pytest
from apercu_client._core import Answer
from apercu_client.bodies import CHUNK, envelope, stream_body
from live import Service, free_port
from urllib3.filepost import encode_multipart_formdata

from apercu import upload_command as upload_client
from apercu.api import multipart
from apercu.config import Settings
from apercu.inspect import PROGRESS_ABOVE, inspect_file, wants_bar
from apercu.upload_command import Options, collect_files

MAX_UPLOAD = 1024 * 1024  # the live service's limit, so that one file of the folder gets a 413


def apercu(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m apercu ...` with stdout and stderr piped (not a terminal), and no key or URL from outside."""
    env = {k: v for k, v in os.environ.items() if k not in ("APERCU_API_KEY", "APERCU_URL")}
    return subprocess.run(
        [sys.executable, "-m", "apercu", *args], capture_output=True, text=True, timeout=180, cwd=cwd, env=env
    )


def on_terminal(*args: str, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], str]:
    """`python -m apercu ...` with stderr on a pseudo-terminal (120 columns) and stdout piped: what a person
    running it sees on stderr, and what a pipe gets on stdout."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    seen: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                return
            if not data:
                return
            seen.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "apercu", *args], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
            text=True, timeout=180, cwd=cwd,
        )
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    return result, b"".join(seen).decode("utf-8", "replace")


# The multipart body


@pytest.mark.parametrize("name", ["a.jpg", 'quo"te\r\nété.png'])
@pytest.mark.parametrize("size", [1000, 3 * CHUNK + 17])
def test_streamed_body_is_what_a_reference_encoder_makes(tmp_path: Path, name: str, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "file"
    path.write_bytes(data)
    head, tail = envelope(name, "b0undary")
    with path.open("rb") as fp:
        chunks = list(stream_body(fp, size, head, tail))
    reference, content_type = encode_multipart_formdata({"file": (name, data, "application/octet-stream")}, "b0undary")
    assert b"".join(chunks) == reference and content_type == "multipart/form-data; boundary=b0undary"
    # Read from disk a chunk at a time, never whole.
    assert max(len(c) for c in chunks[1:-1]) <= CHUNK and len(chunks) == 2 + -(-size // CHUNK)


def test_streamed_body_is_what_the_service_reads(tmp_path: Path) -> None:
    data = images.png_rgba()
    path = tmp_path / "file"
    path.write_bytes(data)
    head, tail = envelope('my "best" photo é.png', "xyz")
    with path.open("rb") as fp:
        body = b"".join(stream_body(fp, len(data), head, tail))
    split = multipart.split_stream(io.BytesIO(body), "xyz", lambda: tempfile.NamedTemporaryFile(dir=tmp_path, delete=False))
    try:
        assert split.error is None and len(split.parts) == 1
        part = split.parts[0]
        assert (part.name, part.filename) == ("file", 'my "best" photo é.png')
        assert part.path is not None and Path(part.path).read_bytes() == data
    finally:
        multipart.discard(split.parts)


def test_a_file_that_shrinks_while_sent_is_an_error_not_a_short_body(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x" * 100)
    with path.open("rb") as fp, pytest.raises(apercu_client.SourceError, match="shorter"):
        list(stream_body(fp, 200, b"head", b"tail"))


# Finding files, keys, retries


def test_collect_walks_folders_skipping_hidden_files_and_keeps_named_files(tmp_path: Path) -> None:
    for rel in ["b.jpg", "a.JPG", "notes.txt", ".hidden.jpg", ".git/x.jpg", "sub/deeper/c.jpg", "sub/d.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in collect_files([tmp_path], [])]
    assert names == ["a.JPG", "b.jpg", "notes.txt", "sub/d.png", "sub/deeper/c.jpg"]
    names = [p.relative_to(tmp_path).as_posix() for p in collect_files([tmp_path], ["*.jpg"])]
    assert names == ["a.JPG", "b.jpg", "sub/deeper/c.jpg"]
    assert collect_files([tmp_path / ".hidden.jpg"], ["*.png"]) == [tmp_path / ".hidden.jpg"]  # asked for by name


def test_idempotency_key_names_one_version_of_one_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(b"one")
    key = upload_client.idempotency_key(path, path.stat())
    assert key == upload_client.idempotency_key(path, path.stat()) and len(key) <= 255 and key.isascii()
    path.write_bytes(b"two!")
    assert upload_client.idempotency_key(path, path.stat()) != key
    copy = tmp_path / "b.jpg"
    copy.write_bytes(b"two!")
    os.utime(copy, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    assert upload_client.idempotency_key(copy, copy.stat()) != upload_client.idempotency_key(path, path.stat())


def test_retry_after_is_read_and_capped() -> None:
    cap = apercu_client.Retries().max_delay
    assert Answer(503, httpx.Headers({"retry-after": "2"}), b"").retry_after(cap) == 2.0
    assert Answer(503, httpx.Headers({"retry-after": "3600"}), b"").retry_after(cap) == cap == 30.0
    assert Answer(503, httpx.Headers({}), b"").retry_after(cap) is None


class Scripted(BaseHTTPRequestHandler):
    """A stand-in for the service: each POST takes the next answer of `script` (`drop` closes the connection
    without one) and is recorded; GET / and GET /images/<id> answer as apercu does."""

    protocol_version = "HTTP/1.1"
    script: list[str] = []
    posts: list[tuple[dict[str, str], bytes]] = []
    gets: list[str] = []
    status = "success"

    def do_GET(self) -> None:
        if self.path == "/":
            self._answer(200, {"status": "ok", "endpoints": []})
        else:
            self.gets.append(self.path)
            self._answer(200, {"id": "f" * 32, "status": self.status, "error": None, "metadata": {"format": "PNG"}})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.posts.append((dict(self.headers), body))
        action = self.script.pop(0)
        if action == "drop":
            self.close_connection = True
        elif action == "503":
            self._answer(503, {"error": {"code": "unavailable", "message": "busy"}}, {"Retry-After": "1"})
        elif action == "401":
            self._answer(401, {"error": {"code": "unauthorized", "message": "an API key is required"}})
        else:
            self._answer(202, {"id": "f" * 32, "status": "pending", "links": {}})

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    Scripted.script, Scripted.posts, Scripted.gets, Scripted.status = [], [], [], "success"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_busy_and_dropped_uploads_are_retried_with_the_same_key(tmp_path: Path, scripted: str) -> None:
    data = images.png_rgba()
    (tmp_path / "a.png").write_bytes(data)
    Scripted.script = ["503", "drop", "202"]
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    options = Options([tmp_path / "a.png"], url=scripted, api_key="k-123", progress=False, as_json=True)
    assert upload_client.run(options, out, err) == 0, err.getvalue()
    assert time.monotonic() - started >= 1.0  # the 503's Retry-After was waited
    assert json.loads(out.getvalue()) == {"path": str(tmp_path / "a.png"), "id": "f" * 32, "status": "success", "error": None}
    assert len(Scripted.posts) == 3
    keys = {headers["Idempotency-Key"] for headers, _ in Scripted.posts}
    assert len(keys) == 1 and {headers["X-API-Key"] for headers, _ in Scripted.posts} == {"k-123"}
    headers, body = Scripted.posts[-1]
    boundary = headers["Content-Type"].split("boundary=")[1]
    assert body == encode_multipart_formdata({"file": ("a.png", data, "application/octet-stream")}, boundary)[0]


def test_a_refused_api_key_stops_the_run(tmp_path: Path, scripted: str) -> None:
    for name in "abc":
        (tmp_path / f"{name}.png").write_bytes(images.png_rgba())
    Scripted.script = ["401"] * 3
    out, err = io.StringIO(), io.StringIO()
    assert upload_client.run(Options([tmp_path], url=scripted, concurrency=1, progress=False), out, err) == 2
    assert err.getvalue() == (
        "apercu upload: the service refused the request: an API key is required (give one with --api-key or "
        "APERCU_API_KEY)\n"
    )
    assert len(Scripted.posts) == 1 and out.getvalue() == ""


def test_an_image_still_processing_at_the_timeout_is_reported(tmp_path: Path, scripted: str) -> None:
    (tmp_path / "a.png").write_bytes(images.png_rgba())
    Scripted.script, Scripted.status = ["202"], "processing"  # and a server that does not hold ?wait=
    out = io.StringIO()
    started = time.monotonic()
    assert upload_client.run(Options([tmp_path], url=scripted, timeout=1.5, progress=False), out, io.StringIO()) == 1
    assert 1.5 <= time.monotonic() - started < 5
    assert out.getvalue().splitlines() == [
        f"processing: {tmp_path / 'a.png'}: still processing when the --timeout ran out",
        "1 file: 0 success, 0 failure, 0 refused, 0 errors, 1 still processing",
    ]
    assert Scripted.gets[0] == f"/images/{'f' * 32}?wait=2" and len(Scripted.gets) <= 1.5 / apercu_client.MIN_POLL + 2


def test_wrong_url_exits_2_with_a_readable_message(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(images.jpeg())
    started = time.monotonic()
    result = apercu("upload", str(tmp_path), "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("apercu upload: cannot reach http://127.0.0.1:") and "connection refused" in result.stderr
    assert time.monotonic() - started < 15
    missing = apercu("upload", str(tmp_path / "missing.jpg"))
    assert missing.returncode == 2 and "no such file or directory" in missing.stderr


# `apercu inspect`'s bar


@pytest.fixture
def inspect_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "pictures"
    folder.mkdir()
    for n in range(PROGRESS_ABOVE + 3):
        (folder / f"img{n}.jpg").write_bytes(images.jpeg((200 + n, 100)))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_inspect_shows_a_bar_on_a_terminal_and_keeps_stdout_clean(inspect_folder: Path) -> None:
    files = sorted(inspect_folder.iterdir())
    options = Settings.from_env().imaging_options()
    expected = "".join(json.dumps(inspect_file(p, options), ensure_ascii=False) + "\n" for p in files)
    result, terminal = on_terminal("inspect", "--json", str(inspect_folder))
    assert result.returncode == 0 and result.stdout == expected
    assert "inspect: 100%" in terminal and f"{len(files)}/{len(files)}" in terminal and "file/s" in terminal
    piped = apercu("inspect", "--json", str(inspect_folder))
    assert piped.stdout == expected and piped.stderr == ""  # not a terminal: the lines and nothing else
    quiet, terminal = on_terminal("inspect", "--json", "--no-progress", str(inspect_folder))
    assert quiet.stdout == expected and terminal == ""


def test_inspect_bar_only_for_a_terminal_and_enough_files() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_bar(Terminal(), PROGRESS_ABOVE + 1)
    assert not wants_bar(Terminal(), PROGRESS_ABOVE)
    assert not wants_bar(io.StringIO(), 1000)


# Against a live service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("upload") / "data", {"APERCU_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)})
    svc.start("serve")
    yield svc
    svc.stop()


def photo_folder(root: Path) -> Path:
    """Four good images in nested folders, one that fails processing, two the service refuses (415, 413), and
    hidden files that are not sent at all."""
    folder = root / "photos"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / ".cache").mkdir()
    (folder / "a.jpg").write_bytes(images.jpeg(gps=True))
    (folder / "b.png").write_bytes(images.png_rgba())
    (folder / "sub" / "c.gif").write_bytes(images.gif_animated())
    (folder / "sub" / "deeper" / "d.JPG").write_bytes(images.jpeg((640, 480), orientation=6))
    broken = images.jpeg((800, 600))
    (folder / "truncated.jpg").write_bytes(broken[: len(broken) // 3])
    (folder / "notes.txt").write_text("not an image")
    (folder / "big.png").write_bytes(images.png_rgba()[:64] + os.urandom(2 * MAX_UPLOAD))
    (folder / ".hidden.jpg").write_bytes(images.jpeg())
    (folder / ".cache" / "e.jpg").write_bytes(images.jpeg())
    return folder


def image_count(service: Service) -> int:
    return len(service.get("/images?limit=100").json()["items"])



@pytest.mark.integration
def test_upload_a_folder_summary_and_exit_code(service: Service, tmp_path: Path) -> None:
    photo_folder(tmp_path)
    before = image_count(service)
    result = apercu("upload", "photos", "--url", f"http://127.0.0.1:{service.port}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # a failure and two refusals
    lines = result.stdout.splitlines()
    assert lines[-1] == "7 files: 4 success, 1 failure, 2 refused, 0 errors"
    assert lines[2].startswith("failure: photos/truncated.jpg: cannot decode image: ")
    assert sorted(lines[:2]) == [
        f"refused: photos/big.png: the file is larger than the maximum upload size of {MAX_UPLOAD} bytes (413)",
        "refused: photos/notes.txt: not an image in a supported format (JPEG, PNG, TIFF, BMP, TGA, GIF, WebP, "
        "HEIC/HEIF, AVIF) (415)",
    ]
    assert result.stderr == ""  # not a terminal: no bar
    assert image_count(service) == before + 5  # no hidden file went up


@pytest.mark.integration
def test_json_lines_match_the_service_and_a_rerun_adds_nothing(service: Service, tmp_path: Path) -> None:
    folder = photo_folder(tmp_path)
    url = f"http://127.0.0.1:{service.port}"
    first = apercu("upload", str(folder), "--url", url, "--json", "--metadata", "--concurrency", "3")
    assert first.returncode == 1, first.stderr
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    assert [Path(line["path"]).relative_to(folder).as_posix() for line in lines] == [
        "a.jpg", "b.png", "big.png", "notes.txt", "truncated.jpg", "sub/c.gif", "sub/deeper/d.JPG",
    ]
    for line in lines:
        assert set(line) == {"path", "id", "status", "error", "metadata"}
        if line["status"] == "refused":
            assert line["id"] is None and line["metadata"] is None and line["error"].endswith(("(413)", "(415)"))
            continue
        stored = service.get(f"/images/{line['id']}").json()
        assert (line["status"], line["error"], line["metadata"]) == (stored["status"], stored["error"], stored["metadata"])
        assert stored["filename"] == Path(line["path"]).name
    assert {Path(line["path"]).name: line["status"] for line in lines if line["status"] != "refused"} == {
        "a.jpg": "success", "b.png": "success", "truncated.jpg": "failure", "c.gif": "success", "d.JPG": "success",
    }
    # Again (an interrupted run started over): the same images come back, none is added.
    count = image_count(service)
    again = apercu("upload", str(folder), "--url", url, "--json")
    assert [json.loads(line)["id"] for line in again.stdout.splitlines()] == [line["id"] for line in lines]
    summary = apercu("upload", str(folder), "--url", url)
    assert summary.stdout.splitlines()[-1] == (
        "7 files: 4 success, 1 failure, 2 refused, 0 errors (5 uploaded before: the service answered with the "
        "earlier upload)"
    )
    assert image_count(service) == count


@pytest.mark.integration
def test_upload_bar_on_a_terminal_and_a_pattern(service: Service, tmp_path: Path) -> None:
    photo_folder(tmp_path)
    url = f"http://127.0.0.1:{service.port}"
    result, terminal = on_terminal("upload", "photos", "--url", url, "--pattern", "*.png", cwd=tmp_path)
    assert result.returncode == 1  # big.png is refused
    assert result.stdout.splitlines()[-1] == "2 files: 1 success, 0 failure, 1 refused, 0 errors"
    assert "upload: 100%" in terminal and "2/2 files" in terminal and "B/s" in terminal
    assert "processing: 100%" in terminal and "1/1" in terminal
    result, terminal = on_terminal("upload", "photos", "--url", url, "--pattern", "*.jpg", "--no-progress", cwd=tmp_path)
    assert result.stdout.splitlines()[-1] == "3 files: 2 success, 1 failure, 0 refused, 0 errors" and terminal == ""
    good = apercu("upload", "photos/a.jpg", "photos/sub", "--url", url, "--json", cwd=tmp_path)
    assert good.returncode == 0 and [json.loads(line)["status"] for line in good.stdout.splitlines()] == ["success"] * 3


@pytest.mark.integration
def test_files_the_service_already_has_are_successes_under_dedup(tmp_path: Path) -> None:
    """With APERCU_DEDUP=reuse the service answers 200 "duplicate" for bytes it has: that is the file's image."""
    folder = tmp_path / "same"
    folder.mkdir()
    data = images.jpeg((400, 300))
    (folder / "one.jpg").write_bytes(data)
    (folder / "two.jpg").write_bytes(data)
    svc = Service(tmp_path / "data", {"APERCU_DEDUP": "reuse"}).start("serve")
    try:
        done = apercu("upload", str(folder), "--url", f"http://127.0.0.1:{svc.port}", "--json", "--concurrency", "1")
        assert done.returncode == 0, done.stdout + done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert [line["status"] for line in lines] == ["success", "success"]
        assert lines[0]["id"] == lines[1]["id"]
    finally:
        svc.stop()
