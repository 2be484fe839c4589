"""What the package and image tests check of a running apercu that was installed rather than run from this
checkout: an upload goes through to its result and thumbnail, and the page and its assets (package data, which
a wheel can silently leave behind) are served."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

from images import jpeg
from live import Service
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PAGE_ASSETS = ("/static/js/app.js", "/static/css/apercu.css", "/static/icon.svg")
STEP_TIMEOUT = 900  # seconds for one build, install or debootstrap on a loaded machine with cold caches


def sh(command: list[str], timeout: float = STEP_TIMEOUT, **kwargs: Any) -> str:
    """Run a command; its output, or AssertionError with the end of what it said."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{command[:4]} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def requirements(extra: str | None = None) -> dict[str, Requirement]:
    """pyproject.toml's runtime requirements (extra None), or an extra's, by normalised name."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    found = [Requirement(text) for text in listed]
    return {normal(r.name): r for r in found if normal(r.name) != "apercu"}


def normal(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return name.lower().replace("_", "-").replace(".", "-")


def exercise(service: Service, size: tuple[int, int] = (640, 480)) -> dict[str, Any]:
    """Upload a JPEG, wait for its result, read its thumbnail, the page and its assets; the final image."""
    sent = service.upload(jpeg(size), "photo.jpg")
    assert sent.status == 202, sent.body[:500]
    image = sent.json()
    done = service.wait_final(image["id"], timeout=120)
    assert done["status"] == "success", done
    assert (done["metadata"]["width"], done["metadata"]["height"]) == size
    thumb = service.get(image["links"]["thumbnail"])
    assert thumb.status == 200 and thumb.headers["Content-Type"] == "image/jpeg", thumb.headers
    assert thumb.body.startswith(b"\xff\xd8")
    page = service.get("/", headers={"Accept": "text/html"})  # a browser's: the page, not the JSON index
    assert page.status == 200 and b'src="/static/js/app.js"' in page.body
    for asset in PAGE_ASSETS:
        assert service.get(asset).status == 200, asset
    return done
