"""Resumable uploads from the client library and `apercu upload` (issue 20, item 5) against a live `apercu serve`:
a big file whose connection is cut mid-transfer goes on from where the service stands, sending only the rest
(counted at a loopback proxy); a new client (another process) continues an upload it finds in the resume store;
and `apercu upload` killed mid-file, run again, resumes from the stored offset and makes exactly one image."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apercu_client import AsyncClient, Client, ResumeStore, Retries, Unreachable, Upload
from apercu_client.resume import fingerprint
from live import Service
from test_client_library import start_relay
from tus_helpers import CuttingProxy, noise_bmp

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
OVERHEAD = 64 * 1024  # request lines and headers sent besides the file's bytes, at most (a few requests)


class Proxy(CuttingProxy):
    """The tus tests' cutting proxy, which also says how many bytes had gone upstream when it cut (`at_cut`) and
    can slow the upstream direction to `rate` bytes a second (so that a process can be killed mid-file)."""

    def __init__(self, port: int, cut_after: int = 1 << 60, rate: float | None = None) -> None:
        self.at_cut, self.rate = 0, rate
        super().__init__(port, cut_after)

    def _cut_now(self, size: int) -> bool:
        if self.rate:
            time.sleep(size / self.rate)
        cut = super()._cut_now(size)
        if cut:
            self.at_cut = self.forwarded
        return cut


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("resume") / "data").start("serve")
    yield svc
    svc.stop()


@pytest.fixture
def big(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "panorama.bmp"
    path.write_bytes(noise_bmp(24))
    yield path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_image_of(service: Service, image_id: str, path: Path) -> None:
    """The upload became a processed image of exactly the file's bytes, the only one with them."""
    image = service.wait_final(image_id, timeout=180)
    assert image["status"] == "success", image
    assert image["filename"] == path.name
    assert image["metadata"]["sha256"] == sha256(path)
    same = service.get(f"/images?sha256={sha256(path)}").json()["items"]
    assert [item["id"] for item in same] == [image_id]


def assert_only_the_rest_was_sent(proxy: Proxy, upload: Upload, size: int, chunk: int) -> None:
    """After the cut, the bytes from where the service stood (a whole number of chunks) to the end, not more."""
    assert proxy.cuts == 1 and upload.resumed_from is not None
    assert 0 < upload.resumed_from <= proxy.at_cut and upload.resumed_from % chunk == 0
    after = proxy.forwarded - proxy.at_cut
    assert size - upload.resumed_from <= after <= size - upload.resumed_from + OVERHEAD, (after, upload)


def test_a_cut_connection_is_resumed_and_only_the_rest_is_sent(service: Service, big: Path, tmp_path: Path) -> None:
    size, chunk = big.stat().st_size, 4 * MIB
    proxy = Proxy(service.port, cut_after=14 * MIB)
    store = ResumeStore(tmp_path / "uploads.json")
    told: list[tuple[int, int]] = []
    with Client(proxy.url, resume_store=store, retries=Retries(connect=3)) as apercu:
        upload = apercu.upload_resumable(big, chunk_size=chunk, checksum=True, wait=120,
                                         progress=lambda sent, total: told.append((sent, total)))
    proxy.close()
    assert upload.image is not None and upload.image.status == upload.status == "success"
    assert_only_the_rest_was_sent(proxy, upload, size, chunk)
    assert_one_image_of(service, upload.id, big)
    assert told[-1] == (size, size) and told[0] == (0, size)
    assert json.loads(store.path.read_text()) == {}  # the image exists: nothing left to resume


def test_another_client_continues_the_upload_it_finds_in_the_store(service: Service, tmp_path: Path) -> None:
    """The async client, given up after the cut (no retries), leaves the upload in the store; a new client (as a
    new process would) asks HEAD and sends the rest."""
    path = tmp_path / "async.bmp"
    path.write_bytes(noise_bmp(10))
    size, chunk = path.stat().st_size, 2 * MIB
    proxy = Proxy(service.port, cut_after=5 * MIB)
    store_path = tmp_path / "store" / "uploads.json"

    async def twice() -> Upload:
        async with AsyncClient(proxy.url, resume_store=store_path, retries=Retries(connect=0)) as first:
            with pytest.raises(Unreachable):
                await first.upload_resumable(path, chunk_size=chunk)
        assert ResumeStore(store_path).get(next(iter(json.loads(store_path.read_text())))) is not None
        async with AsyncClient(proxy.url, resume_store=store_path) as second:
            return await second.upload_resumable(path, chunk_size=chunk, wait=120)

    upload = asyncio.run(twice())
    proxy.close()
    assert upload.image is not None and upload.image.status == "success"
    assert_only_the_rest_was_sent(proxy, upload, size, chunk)
    assert_one_image_of(service, upload.id, path)


def test_without_remember_nothing_is_stored_and_a_small_file_goes_whole(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "small.bmp"
    path.write_bytes(noise_bmp(0.5))
    store = ResumeStore(tmp_path / "uploads.json")
    with Client(f"http://127.0.0.1:{service.port}", resume_store=store) as apercu:
        upload = apercu.upload_resumable(path, remember=False, idempotency_key="resume-small", wait=60)
        assert upload.resumed_from is None and not store.path.exists()
        again = apercu.upload_resumable(path, idempotency_key="resume-small")  # the same key: the same image
    assert again.id == upload.id and json.loads(store.path.read_text()) == {}
    assert_one_image_of(service, upload.id, path)


def upload_command(url: str, path: Path, store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "apercu", "upload", str(path), "--url", url, "--resume-store", str(store),
            "--json", "--no-progress", *extra]


def offset_of(service: Service, store: Path) -> int:
    """The offset the service has for the one upload in the store (0 before there is one)."""
    try:
        entries = json.loads(store.read_text())
    except (OSError, ValueError):
        return 0
    if not entries:
        return 0
    location = next(iter(entries.values()))["url"]
    return int(service.request("HEAD", location, headers=TUS).headers.get("Upload-Offset", 0))


def test_apercu_upload_killed_mid_file_resumes_on_the_next_run(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "forty.bmp"
    path.write_bytes(noise_bmp(40))
    size, store = path.stat().st_size, tmp_path / "uploads.json"
    proxy = Proxy(service.port, rate=6e6)  # slow enough to be killed mid-file
    first = subprocess.Popen(upload_command(proxy.url, path, store), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while offset_of(service, store) == 0 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    time.sleep(1)  # (a request whose every byte had arrived is still appended)
    stored = offset_of(service, store)
    assert 0 < stored < size

    proxy.rate, before = None, proxy.forwarded
    started = time.monotonic()
    again = subprocess.run(upload_command(proxy.url, path, store, "--timeout", "0"), capture_output=True,
                           text=True, timeout=300)
    elapsed = time.monotonic() - started
    proxy.close()
    line = json.loads(again.stdout.splitlines()[0])
    assert line["id"] and line["status"] in ("pending", "processing", "success"), again
    sent = proxy.forwarded - before
    assert size - stored <= sent <= size - stored + OVERHEAD, (sent, stored)
    print(f"\nresumed {size / 1e6:.1f} MB from {stored / 1e6:.1f} MB: {elapsed:.2f} s from the re-run's start "
          f"to the image's id ({(size - stored) / 1e6:.1f} MB sent)")
    assert_one_image_of(service, line["id"], path)


def test_apercu_upload_sends_files_above_the_threshold_by_tus(service: Service, tmp_path: Path) -> None:
    """Above `--resumable-above` MB: tus (creation, PATCHes); at or below it, and with `--no-resume`, one
    idempotent POST /images, as before."""
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "big.bmp").write_bytes(noise_bmp(2.5))
    (folder / "small.bmp").write_bytes(noise_bmp(0.3))
    relay, seen = start_relay(upstream=service.port)
    url, store = f"http://127.0.0.1:{relay.server_address[1]}", tmp_path / "uploads.json"
    try:
        done = subprocess.run(upload_command(url, folder, store, "--resumable-above", "2"), capture_output=True,
                              text=True, timeout=300)
        tus = [line for line in seen if "/uploads/" in line]
        posts = [line for line in seen if line == "POST /images"]
        seen.clear()
        whole = subprocess.run(upload_command(url, folder, store, "--resumable-above", "0", "--no-resume"),
                               capture_output=True, text=True, timeout=300)
    finally:
        relay.shutdown()
        relay.server_close()
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and [line["status"] for line in lines] == ["success", "success"], done
    assert tus[0] == "POST /uploads/" and all(line.startswith("PATCH /uploads/") for line in tus[1:]) and tus[1:]
    assert posts == ["POST /images"]  # the small file
    assert whole.returncode == 0 and [line for line in seen if line.startswith(("POST", "PATCH"))] == \
        ["POST /images", "POST /images"]
    again = [json.loads(line)["id"] for line in whole.stdout.splitlines()]
    assert again == [line["id"] for line in lines]  # the same images: the same idempotency keys


def test_the_resume_store_survives_damage_and_forgets(tmp_path: Path) -> None:
    store = ResumeStore(tmp_path / "deep" / "uploads.json")
    assert store.get("a") is None
    store.put("a", "/uploads/1")
    store.put("b", "/uploads/2")
    store.forget("a")
    assert (store.get("a"), store.get("b")) == (None, "/uploads/2")
    store.path.write_text("{not json")
    assert store.get("b") is None  # damaged: an empty store (the upload starts again)
    store.put("c", "/uploads/3")
    assert json.loads(store.path.read_text())["c"]["url"] == "/uploads/3"
    assert [p.name for p in store.path.parent.iterdir()] == ["uploads.json"]  # no temporary file left


def test_the_default_store_is_in_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ResumeStore().path == tmp_path / "apercu" / "uploads.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert ResumeStore().path == Path.home() / ".cache" / "apercu" / "uploads.json"


def test_a_stored_upload_the_service_no_longer_has_starts_again(service: Service, tmp_path: Path) -> None:
    path = tmp_path / "gone.bmp"
    path.write_bytes(noise_bmp(0.4))
    url = f"http://127.0.0.1:{service.port}"
    store = ResumeStore(tmp_path / "uploads.json")
    store.put(fingerprint(url, path, path.stat()), "/uploads/" + "0" * 32)  # never was (as after the sweep)
    with Client(url, resume_store=store) as apercu:
        upload = apercu.upload_resumable(path, wait=60)
    assert upload.resumed_from is None and upload.status == "success"
    assert json.loads(store.path.read_text()) == {}
    assert_one_image_of(service, upload.id, path)
