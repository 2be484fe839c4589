"""The page's resumable uploads (issue 20, item 5) in Chromium against a real `apercu serve`: a file above a few MB
goes by tus (tus-js-client, shipped in the package's static/vendor/), survives the network going away (Playwright's
offline mode) and coming back, can be paused and resumed from its row, and, chosen again after a reload, carries on
from where the service says it stands (tus-js-client's fingerprint in localStorage). Each request to /uploads/ is
held a moment on its way (a route), so that a loopback upload lasts long enough to be cut; the route also records
each request's `Upload-Offset`, which is how the tests see that an upload resumed rather than started again.
Small files keep `POST /images` (tests/test_page.py).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from live import Service
from test_page import API_KEY, TIMEOUT_MS, browser, open_page, wait_for_thumbnails  # noqa: F401 - a fixture
from tus_helpers import noise_bmp

from apercu.api import create_app
from apercu.config import Settings

pytestmark = pytest.mark.integration
HOLD = 0.3  # seconds each resumable upload request is held on its way
MEGABYTES = 24  # the big file: twelve 2 MiB PATCHes
STATUS = "() => document.querySelector('.upload').dataset.status"


@dataclass
class Sent:
    at: float
    method: str
    offset: int | None  # the PATCH's Upload-Offset


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path / "data").start("serve")
    yield svc
    svc.stop()


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "panorama.bmp"
    path.write_bytes(noise_bmp(MEGABYTES))
    return path


def slowed(page: Any) -> list[Sent]:
    """Hold every request to /uploads/ a moment (a route survives reloads); each one as sent."""
    sent: list[Sent] = []

    def hold(route: Any) -> None:
        offset = route.request.headers.get("upload-offset")
        sent.append(Sent(time.monotonic(), route.request.method, None if offset is None else int(offset)))
        time.sleep(HOLD)
        route.continue_()

    page.route(lambda url: "/uploads/" in url, hold)
    return sent


def pick_files(page: Any, files: list[Path]) -> None:
    """Files chosen once the page offers uploading (test_page.py opens the picker from the keyboard; here the
    input is given them directly: a page that re-rendered its drop zone under load once lost the key press)."""
    from playwright.sync_api import expect

    expect(page.locator("#dropzone")).to_be_visible(timeout=TIMEOUT_MS)
    page.locator("#file-input").set_input_files([str(f) for f in files])


def progress(page: Any) -> float:
    return float(page.evaluate("() => document.querySelector('.upload__progress').value"))


def wait_progress(page: Any, at_least: float) -> None:
    page.wait_for_function(f"() => document.querySelector('.upload__progress')?.value >= {at_least}",
                           timeout=TIMEOUT_MS)


def wait_status(page: Any, status: str) -> None:
    page.wait_for_function(f"() => document.querySelector('.upload')?.dataset.status === '{status}'",
                           timeout=TIMEOUT_MS)


def server_offset(svc: Service, page: Any) -> int:
    """Where the service says the page's upload stands (tus HEAD on the URL the row shows)."""
    url = page.evaluate("() => document.querySelector('.upload').dataset.upload")
    reply = svc.request("HEAD", urlsplit(url).path, headers={"Tus-Resumable": "1.0.0"})
    assert reply.status == 200, reply
    return int(reply.headers["Upload-Offset"])


def first_patch_after(sent: list[Sent], moment: float) -> Sent:
    return next(s for s in sent if s.at > moment and s.method == "PATCH")


def finished_in_the_grid(page: Any, svc: Service, path: Path, sent: list[Sent]) -> None:
    """Ready on its row and in the gallery, stored as the file's bytes under its name, by one tus upload."""
    wait_status(page, "success")
    wait_for_thumbnails(page, 1)
    items = svc.get("/images").json()["items"]
    assert [item["filename"] for item in items] == [path.name]
    assert items[0]["metadata"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [s.method for s in sent].count("POST") == 1  # one upload, resumed: never started again
    assert page.evaluate("() => Object.keys(localStorage).filter((k) => k.startsWith('tus::'))") == []


def sending(chromium: Any, svc: Service, path: Path, at_least: float) -> tuple[Any, list[str], str, list[Sent]]:
    """A page (its script errors, its URL) uploading `path` through the picker, once that much of it was sent."""
    page, errors, url = open_page(chromium, svc)
    sent = slowed(page)
    pick_files(page, [path])
    wait_progress(page, at_least)
    return page, errors, url, sent


def stands_still(page: Any, sent: list[Sent], status: str, says: str) -> None:
    """Once what was on its way has ended: no progress, and no request sent, for a few seconds; the row says why."""
    time.sleep(2 * HOLD + 1)
    at, requests = progress(page), len([s for s in sent if s.method == "PATCH"])
    time.sleep(3)
    assert progress(page) == at < 1
    assert len([s for s in sent if s.method == "PATCH"]) == requests
    assert page.evaluate(STATUS) == status
    assert says in page.locator(".upload__state").inner_text()


def test_a_big_upload_waits_out_the_network_going_away(browser: Any, served: Service, big: Path) -> None:  # noqa: F811
    page, errors, _url, sent = sending(browser, served, big, 0.3)
    page.context.set_offline(True)
    wait_status(page, "retrying")  # the row says so, and keeps trying
    stands_still(page, sent, "retrying", "Connection lost")
    stored = server_offset(served, page)
    assert stored > 0  # the service kept what came before the cut
    back = time.monotonic()  # (a request the route saw while offline failed: the resume comes after this)
    page.context.set_offline(False)
    finished_in_the_grid(page, served, big, sent)
    resumed = first_patch_after(sent, back)
    assert resumed.offset == stored  # from where it stood, not from 0
    assert "HEAD" in [s.method for s in sent if back < s.at < resumed.at]  # asked where it stood first
    assert errors == []


def test_a_big_upload_pauses_and_resumes(browser: Any, served: Service, big: Path) -> None:  # noqa: F811
    page, errors, _url, sent = sending(browser, served, big, 0.2)
    page.get_by_role("button", name="Pause").click()
    stands_still(page, sent, "paused", "Paused at")
    stored = server_offset(served, page)
    resumed_at = time.monotonic()
    page.get_by_role("button", name="Resume").click()
    finished_in_the_grid(page, served, big, sent)
    assert first_patch_after(sent, resumed_at).offset == stored > 0
    assert page.get_by_role("button", name="Pause").count() == 0  # the button goes with the upload
    assert errors == []


def test_the_same_file_after_a_reload_carries_on(browser: Any, served: Service, big: Path) -> None:  # noqa: F811
    page, errors, url, sent = sending(browser, served, big, 0.3)
    assert page.evaluate("() => Object.keys(localStorage).filter((k) => k.startsWith('tus::')).length") == 1
    page.goto(url)  # the page gone mid-upload: what was on its way is dropped
    time.sleep(2 * HOLD + 1)
    reloaded = time.monotonic()
    pick_files(page, [big])  # the same file again: its fingerprint finds the upload in localStorage
    wait_progress(page, 0.01)
    stored = server_offset(served, page)
    finished_in_the_grid(page, served, big, sent)
    resumed = first_patch_after(sent, reloaded)
    assert resumed.offset is not None and 0 < resumed.offset <= stored
    assert not [s for s in sent if s.at > reloaded and s.method == "POST"]  # no new upload
    assert errors == []


def test_with_keys_on_every_resumable_request_carries_the_key(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    svc = Service(tmp_path / "data", {"APERCU_API_KEYS": API_KEY}).start("serve")
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(f"localStorage.setItem('apercu.apiKey', {API_KEY!r})")  # as the key dialog leaves it
        page = context.new_page()
        keys: dict[str, str | None] = {}  # method -> the X-API-Key it was sent with
        page.on("request", lambda req: keys.update({req.method: req.headers.get("x-api-key")})
                if "/uploads/" in req.url else None)
        page.goto(f"http://127.0.0.1:{svc.port}/")
        path = tmp_path / "mural.bmp"
        path.write_bytes(noise_bmp(6))  # above the page's 4 MiB: by tus
        pick_files(page, [path])
        wait_status(page, "success")
        assert keys == {"POST": API_KEY, "PATCH": API_KEY}
        assert svc.get("/images", headers={"X-API-Key": API_KEY}).json()["items"][0]["filename"] == "mural.bmp"
        context.close()
    finally:
        svc.stop()


def test_behind_a_proxys_prefix_the_page_and_its_uploads_keep_it(settings: Settings) -> None:
    """The page sends tus to `<apercu-root>/uploads/`; tus-js-client follows the `Location` it is given, which must
    carry the prefix too (without a browser: the Flask test client, as a trusted proxy on loopback)."""
    client = create_app(replace(settings, trusted_proxies=("127.0.0.1",))).test_client()
    behind = {"X-Forwarded-Prefix": "/photos"}
    page = client.get("/", headers={"Accept": "text/html", **behind}).get_data(as_text=True)
    assert '<meta name="apercu-root" content="/photos">' in page
    created = client.post("/uploads/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10", **behind})
    assert created.status_code == 201
    assert re.fullmatch(r"/photos/uploads/[0-9a-f]+", created.headers["Location"])
