"""GET /r/<signature>/<options>/<id>.<ext> through the Flask test client, on a real SQLite catalog, the embedded
broker and the data directory's blob store, with the worker's own render code running in a thread of this process
(`worker`): the signature and its errors, the first request waiting for one render, the HTTP around a kept
rendition, `auto`, presets, deletion. The real worker process is exercised in test_service.py's way at the end.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import images
import pytest
from conftest import parse_json
from PIL import Image

from apercu.api import create_app
from apercu.config import Settings
from apercu.storage import blob_keys
from apercu.url_signing import sign

KEY = "k" * 32
API_KEY = "an-api-key"
ID_LIKE = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}", url_key=KEY,
                    presets="card=w:40/h:30/fit:cover", rendition_wait=5)


def signed(path: str, key: str = KEY) -> str:
    return f"/r/{sign(path, key)}{path}"


def code_of(response: Any) -> str:
    assert response.headers["Cache-Control"] == "no-store"
    return str(parse_json(response)["error"]["code"])


def uploaded(client: Any, process: Any, data: bytes | None = None, filename: str = "holiday photo.jpeg") -> str:
    body = parse_json(client.post("/images", data={"file": (io.BytesIO(data or images.jpeg((800, 600))), filename)},
                                  headers={"X-API-Key": API_KEY}))
    process(body["id"])
    return str(body["id"])


def renditions_of(app: Any, image_id: str) -> list[str]:
    return list(app.extensions["apercu"].storage.blobs.keys(f"{blob_keys.RENDITIONS}{image_id}/"))


@contextlib.contextmanager
def worker(render: Any, image_id: str) -> Iterator[list[tuple[Any, ...]]]:
    """The worker's render code in a thread, taking render messages for `image_id` off the broker as they come;
    yields what it rendered."""
    done: list[tuple[Any, ...]] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            done.extend(render(image_id))
            time.sleep(0.02)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join()


def test_a_first_request_waits_for_its_render_then_the_kept_one_is_streamed(
    app: Any, client: Any, process: Any, render: Any
) -> None:
    image_id = uploaded(client, process)
    url = signed(f"/w:200/h:150/fit:cover/{image_id}.webp")
    with worker(render, image_id) as rendered:
        first = client.get(url)
    assert first.status_code == 200 and first.mimetype == "image/webp"
    assert len(rendered) == 1 and Image.open(io.BytesIO(first.data)).size == (200, 150)
    assert first.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert first.headers["Content-Disposition"] == 'inline; filename="holiday photo.webp"'
    assert "Vary" not in first.headers
    again = client.get(url)  # no worker now: it is kept
    assert again.status_code == 200 and again.data == first.data and again.headers["ETag"] == first.headers["ETag"]
    head = client.head(url)
    assert head.status_code == 200 and head.data == b"" and head.mimetype == "image/webp"
    assert int(head.headers["Content-Length"]) == len(first.data)
    cached = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert cached.status_code == 304 and cached.data == b"" and "immutable" in cached.headers["Cache-Control"]
    assert render(image_id) == []  # nothing queued by those

    # The same pixels asked otherwise (order, dpr, exp, defaults spelled out) are the same rendition.
    same = signed(f"/exp:{int(time.time()) + 60}/fit:cover/dpr:2/h:75/w:100/q:75/{image_id}.webp")
    assert client.get(same).data == first.data and len(renditions_of(app, image_id)) == 1


def test_many_concurrent_first_requests_make_one_render(app: Any, client: Any, process: Any, render: Any) -> None:
    image_id = uploaded(client, process)
    urls = [signed(f"/w:120/{image_id}.png"), signed(f"/w:60/dpr:2/{image_id}.png")]
    answers: list[Any] = []

    def ask(n: int) -> None:
        answers.append(app.test_client().get(urls[n % 2]))

    with worker(render, image_id) as rendered:
        threads = [threading.Thread(target=ask, args=(n,)) for n in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [a.status_code for a in answers] == [200] * 10
    assert len({a.data for a in answers}) == 1 and Image.open(io.BytesIO(answers[0].data)).size == (120, 90)
    assert len(rendered) == 1 and len(renditions_of(app, image_id)) == 1


def test_a_kept_rendition_found_empty_or_missing_is_rendered_again(
    app: Any, client: Any, process: Any, render: Any
) -> None:
    """The worker stores renditions without fsync: after a machine's crash one may be an empty file, or none,
    while the catalog still records it as kept. Either is rendered again, never served as it is."""
    image_id = uploaded(client, process)
    url = signed(f"/w:90/{image_id}.png")
    with worker(render, image_id):
        first = client.get(url).data
    (key,) = renditions_of(app, image_id)
    blobs = app.extensions["apercu"].storage.blobs
    for damage in (lambda: blobs.put(key, b""), lambda: blobs.delete(key)):
        damage()
        with worker(render, image_id) as rendered:
            again = client.get(url)
        assert again.status_code == 200 and again.data == first and len(rendered) == 1
        assert blobs.stat(key).size == len(first)


def test_refusals_say_why_and_are_never_cached(app: Any, client: Any, process: Any, render: Any) -> None:
    image_id = uploaded(client, process)
    path = f"/w:100/{image_id}.jpg"
    forged = client.get(signed(path, "x" * 32))
    assert forged.status_code == 403 and code_of(forged) == "bad_signature"
    assert code_of(client.get(f"/r/{sign(path, KEY)}/w:101/{image_id}.jpg")) == "bad_signature"  # another path
    assert code_of(client.get(f"/r/unsafe{path}")) == "bad_signature"  # a key is set
    for option, bad in (("zoom", "zoom:2"), ("q", "q:101"), ("g", "g:middle"), ("p", "p:nope"), ("w", "w:-1")):
        refused = client.get(signed(f"/{bad}/{image_id}.jpg"))
        assert refused.status_code == 400 and code_of(refused) == "invalid_option"
        assert parse_json(refused)["error"]["message"].startswith(f"{option}:")
    huge = client.get(signed(f"/w:6000/h:6000/fit:stretch/{image_id}.jpg"))
    assert huge.status_code == 400 and "25000000" in parse_json(huge)["error"]["message"]
    outside = client.get(signed(f"/crop:900:0:10:10/{image_id}.jpg"))
    assert outside.status_code == 400 and parse_json(outside)["error"]["message"].startswith("crop:")
    expired = client.get(signed(f"/exp:{int(time.time()) - 1}/w:100/{image_id}.jpg"))
    assert expired.status_code == 403 and code_of(expired) == "url_expired"
    for missing in (f"/w:100/{ID_LIKE}.jpg", "/w:100/nothex.jpg"):
        assert client.get(signed(missing)).status_code == 404
    assert render(image_id) == []  # none of them asked for a render


def test_an_output_over_the_pixel_limit_is_refused_before_any_render(
    settings: Settings, process: Any, render: Any
) -> None:
    app = create_app(settings.with_overrides(max_rendition_pixels=200_000))
    client = app.test_client()
    image_id = uploaded(client, process)  # 800x600: one side given, the other follows from the image
    refused = client.get(signed(f"/w:700/{image_id}.jpg"))
    assert refused.status_code == 400 and parse_json(refused)["error"]["message"].startswith("w:")
    assert render(image_id) == []


def test_a_failed_image_is_404_with_the_reason_and_one_processing_is_waited_for(
    app: Any, client: Any, process: Any, render: Any
) -> None:
    data = images.jpeg((1200, 900))
    broken = uploaded(client, process, data[: len(data) // 2])
    failed = client.get(signed(f"/w:100/{broken}.jpg"))
    assert failed.status_code == 404 and code_of(failed) == "no_rendition"
    assert "cannot decode" in parse_json(failed)["error"]["message"]

    body = parse_json(client.post("/images", data={"file": (io.BytesIO(data), "a.jpg")}))
    answers: list[Any] = []
    asking = threading.Thread(target=lambda: answers.append(app.test_client().get(signed(f"/w:90/{body['id']}.jpg"))))
    with worker(render, body["id"]):
        asking.start()
        time.sleep(0.3)  # asked while the image is pending
        process(body["id"])
        asking.join()
    assert answers[0].status_code == 200 and Image.open(io.BytesIO(answers[0].data)).size == (90, 68)


def test_past_the_wait_a_first_request_is_503_and_the_render_stays_queued(
    settings: Settings, process: Any, render: Any
) -> None:
    app = create_app(settings.with_overrides(rendition_wait=0.5))
    client = app.test_client()
    image_id = uploaded(client, process)
    late = client.get(signed(f"/w:50/{image_id}.jpg"))
    assert late.status_code == 503 and late.headers["Retry-After"] and code_of(late) == "not_ready"
    assert len(render(image_id)) == 1
    assert client.get(signed(f"/w:50/{image_id}.jpg")).status_code == 200


def test_auto_is_negotiated_by_accept_and_varies_by_it(app: Any, client: Any, process: Any, render: Any) -> None:
    image_id = uploaded(client, process)
    url = signed(f"/w:64/{image_id}.auto")
    with worker(render, image_id) as rendered:
        answers = {accept: client.get(url, headers={"Accept": accept}) for accept in (
            "image/avif,image/webp,*/*", "image/webp,image/*;q=0.8", "image/avif;q=0,image/webp", "*/*")}
    assert {accept: a.mimetype for accept, a in answers.items()} == {
        "image/avif,image/webp,*/*": "image/avif", "image/webp,image/*;q=0.8": "image/webp",
        "image/avif;q=0,image/webp": "image/webp", "*/*": "image/jpeg"}
    assert all(a.status_code == 200 and a.headers["Vary"] == "Accept" for a in answers.values())
    assert answers["*/*"].headers["Content-Disposition"] == 'inline; filename="holiday photo.jpg"'
    assert len(rendered) == 3  # one per format: the webp one twice


def test_presets_are_listed_in_the_image_json_and_served(app: Any, client: Any, process: Any, render: Any) -> None:
    image_id = uploaded(client, process)
    listed = parse_json(client.get(f"/images/{image_id}"))["renditions"]
    path = f"/p:card/{image_id}.auto"
    assert listed == {"card": f"/r/{sign(path, KEY)}{path}"}
    with worker(render, image_id):
        card = client.get(listed["card"], headers={"Accept": "image/webp"})
        extended = client.get(signed(f"/p:card/w:20/{image_id}.jpg"))  # a URL's own options override the preset's
    assert card.status_code == 200 and card.mimetype == "image/webp"
    assert Image.open(io.BytesIO(card.data)).size == (40, 30) and Image.open(io.BytesIO(extended.data)).size == (20, 30)


def test_deleting_an_image_deletes_its_renditions(app: Any, client: Any, process: Any, render: Any) -> None:
    image_id = uploaded(client, process)
    with worker(render, image_id):
        assert client.get(signed(f"/w:32/{image_id}.png")).status_code == 200
        assert client.get(signed(f"/h:32/{image_id}.avif")).status_code == 200
    assert len(renditions_of(app, image_id)) == 2
    assert client.delete(f"/images/{image_id}").status_code == 204
    assert renditions_of(app, image_id) == []
    assert client.get(signed(f"/w:32/{image_id}.png")).status_code == 404


@pytest.mark.parametrize(("url_key", "api_keys", "accepted"), [
    ("", (), True), (KEY, (), False), ("", (API_KEY,), False),
])
def test_unsafe_is_accepted_only_without_any_key(
    settings: Settings, process: Any, render: Any, url_key: str, api_keys: tuple[str, ...], accepted: bool
) -> None:
    app = create_app(settings.with_overrides(url_key=url_key, api_keys=api_keys))
    client = app.test_client()
    image_id = uploaded(client, process)
    with worker(render, image_id):
        answer = client.get(f"/r/unsafe/w:30/{image_id}.jpg")
    assert answer.status_code == (200 if accepted else 403)
    listed = parse_json(client.get(f"/images/{image_id}", headers={"X-API-Key": API_KEY})).get("renditions")
    assert (listed is not None) == bool(url_key or not api_keys)


def test_a_signature_stands_in_for_an_api_key(settings: Settings, process: Any, render: Any) -> None:
    app = create_app(settings.with_overrides(api_keys=API_KEY))
    client = app.test_client()
    image_id = uploaded(client, process)
    assert client.get(f"/images/{image_id}").status_code == 401
    with worker(render, image_id):
        shown = client.get(signed(f"/w:30/{image_id}.jpg"))  # as an <img> asks: no key
    assert shown.status_code == 200 and shown.mimetype == "image/jpeg"
    assert shown.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert code_of(client.get(signed(f"/w:30/{image_id}.jpg", "y" * 32))) == "bad_signature"


def test_the_sweep_removes_the_least_recently_used_beyond_the_bound(
    app: Any, client: Any, process: Any, render: Any
) -> None:
    from apercu.tasks.housekeeping import MIB, Housekeeping

    image_id = uploaded(client, process)
    urls = [signed(f"/w:{width}/{image_id}.png") for width in (50, 60, 70)]
    with worker(render, image_id):
        first = [client.get(url).data for url in urls]  # rendered in this order: 50 is the oldest
    assert client.get(urls[0]).data == first[0]  # ...until it is used again: now 60 is the least recently used
    kept = app.extensions["apercu"].storage.catalog.kept
    keeper = Housekeeping(app.extensions["apercu"].celery, "test-worker")
    keeper.settings = keeper.settings.with_overrides(renditions_max_mb=(kept.total() - 1) / MIB)
    assert keeper.sweep_kept() == 1 and len(renditions_of(app, image_id)) == 2
    assert keeper.sweep_kept() == 0
    assert len(kept.least_used(10)) == 2
    with worker(render, image_id) as rendered:
        assert [client.get(url).data for url in urls] == first
    assert rendered == [("w:60.png",)]  # the least recently used, gone, and rendered again


@pytest.mark.integration
def test_a_real_service_makes_one_render_for_concurrent_first_requests(tmp_path: Path) -> None:
    """`apercu serve` (web, worker, embedded broker): an `<img>`'s first requests at once wait for one render in
    the worker's sandbox, and every later one is answered from the store."""
    from live import Service

    service = Service(tmp_path / "data", {"APERCU_URL_KEY": KEY, "APERCU_LOG_LEVEL": "INFO"}).start("serve")
    try:
        image_id = service.upload(images.jpeg((800, 600)), "cat.jpg").json()["id"]
        assert service.wait_final(image_id)["status"] == "success"
        url = signed(f"/w:300/fit:cover/h:200/{image_id}.webp")
        answers: list[Any] = []
        threads = [threading.Thread(target=lambda: answers.append(service.get(url))) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [a.status for a in answers] == [200] * 8 and len({a.body for a in answers}) == 1
        assert answers[0].headers["Content-Type"] == "image/webp"
        assert Image.open(io.BytesIO(answers[0].body)).size == (300, 200)
        assert service.get(url).body == answers[0].body
    finally:
        service.stop()
    rendered = service.log.read_text().count(f"image {image_id}: rendition fit:cover/h:200/w:300.webp success")
    assert rendered == 1


def test_apercu_sign_prints_the_path_the_route_accepts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from apercu.cli import main

    monkeypatch.setenv("APERCU_URL_KEY", KEY)
    assert main(["sign", f"w:400/h:300/fit:cover/{ID_LIKE}.avif"]) == 0
    assert capsys.readouterr().out.strip() == signed(f"/w:400/h:300/fit:cover/{ID_LIKE}.avif")
    assert main(["sign", "--ttl", "60", f"/w:400/{ID_LIKE}.jpg"]) == 0
    printed = capsys.readouterr().out.strip()
    expiry = int(printed.split("/exp:")[1].split("/")[0])
    assert abs(expiry - (time.time() + 60)) < 5 and printed == signed(f"/w:400/exp:{expiry}/{ID_LIKE}.jpg")
    assert main(["sign", f"q:0/{ID_LIKE}.jpg"]) == 2 and "q:" in capsys.readouterr().err
    monkeypatch.delenv("APERCU_URL_KEY")
    monkeypatch.setenv("APERCU_API_KEYS", API_KEY)
    assert main(["sign", f"w:1/{ID_LIKE}.jpg"]) == 2 and "APERCU_URL_KEY" in capsys.readouterr().err


def test_the_orphan_sweep_adopts_renditions_the_catalog_does_not_record(
    app: Any, client: Any, process: Any, render: Any
) -> None:
    """A rendition kept before `apercu_kept` existed (or whose worker died between storing and recording it) has
    no row: the orphan sweep records it, as last used when it was written, and the bound then applies to it."""
    from apercu.tasks.housekeeping import Housekeeping

    image_id = uploaded(client, process)
    with worker(render, image_id):
        data = client.get(signed(f"/w:40/{image_id}.png")).data
    storage = app.extensions["apercu"].storage
    (key,) = renditions_of(app, image_id)
    storage.catalog.kept.forget([key])  # as an older version left it
    keeper = Housekeeping(app.extensions["apercu"].celery, "test-worker")
    keeper.settings = keeper.settings.with_overrides(orphan_grace=0)
    keeper.sweep_orphans()
    assert storage.catalog.kept.least_used(10) == [(key, len(data))]
    keeper.settings = keeper.settings.with_overrides(renditions_max_mb=0)
    assert keeper.sweep_kept() == 1 and renditions_of(app, image_id) == []
