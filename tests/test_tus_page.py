"""The page's resumable uploads (issue 20, item 5) in Chromium against a real `apercu serve`: a file above a few MB
goes by tus (tus-js-client, shipped in the package's static/vendor/), survives the network going away (Playwright's
offline mode) and coming back, and can be paused and resumed from its row. Each PATCH is held a moment on its way
(a route), so that a loopback upload lasts long enough to be cut.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live import Service
from test_page import browser, open_page, pick_files  # noqa: F401 - `browser` is a fixture
from tus_helpers import noise_bmp

pytestmark = pytest.mark.integration
HOLD = 0.3  # seconds each resumable upload request is held on its way


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path / "data").start("serve")
    yield svc
    svc.stop()


def slowed(page: Any) -> list[tuple[float, str]]:
    """Hold every request to /uploads/ a moment; (time, method) of each, as sent."""
    sent: list[tuple[float, str]] = []

    def hold(route: Any) -> None:
        sent.append((time.monotonic(), route.request.method))
        time.sleep(HOLD)
        route.continue_()

    page.route(lambda url: "/uploads/" in url, hold)
    return sent


def progress(page: Any) -> float:
    return float(page.evaluate("() => document.querySelector('.upload__progress').value"))


def wait_progress(page: Any, at_least: float) -> None:
    page.wait_for_function(f"() => document.querySelector('.upload__progress')?.value >= {at_least}")


def wait_ready(page: Any) -> None:
    page.wait_for_function("() => document.querySelector('.upload')?.dataset.status === 'success'")


def stored_as(svc: Service, data: bytes, name: str) -> None:
    """The image the page made: the file's bytes, under the file's name."""
    items = svc.get("/images").json()["items"]
    assert [item["filename"] for item in items] == [name]
    assert items[0]["metadata"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_big_upload_survives_the_network_going_away(browser: Any, served: Service, tmp_path: Path) -> None:  # noqa: F811
    page, errors, _url = open_page(browser, served)
    sent = slowed(page)
    big = tmp_path / "panorama.bmp"
    big.write_bytes(noise_bmp(12))
    pick_files(page, [big])
    wait_progress(page, 0.3)
    page.context.set_offline(True)
    cut = time.monotonic()
    time.sleep(4)
    assert page.evaluate("() => document.querySelector('.upload').dataset.status") == "uploading"
    assert progress(page) < 1
    page.context.set_offline(False)
    wait_ready(page)
    after = [method for when, method in sent if when > cut]
    assert "HEAD" in after and "PATCH" in after  # asked where it stood, then sent the rest
    assert [method for _, method in sent].count("POST") == 1  # one upload, resumed: never started again
    stored_as(served, big.read_bytes(), "panorama.bmp")
    assert errors == []


def test_a_big_upload_pauses_and_resumes(browser: Any, served: Service, tmp_path: Path) -> None:  # noqa: F811
    page, errors, _url = open_page(browser, served)
    sent = slowed(page)
    big = tmp_path / "harbour.bmp"
    big.write_bytes(noise_bmp(10))
    pick_files(page, [big])
    wait_progress(page, 0.2)
    page.get_by_role("button", name="Pause").click()
    time.sleep(2 * HOLD + 1)  # what was on its way has ended
    paused_at, requests = progress(page), len(sent)
    time.sleep(2)
    assert progress(page) == paused_at < 1 and len(sent) == requests  # nothing sent while paused
    assert page.evaluate("() => document.querySelector('.upload').dataset.status") == "paused"
    page.get_by_role("button", name="Resume").click()
    wait_ready(page)
    stored_as(served, big.read_bytes(), "harbour.bmp")
    assert errors == []
