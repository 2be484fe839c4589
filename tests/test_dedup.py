"""APERCU_DEDUP=reuse: bytes already stored are answered with their image (200, "duplicate": true), nothing new is
stored, and identical uploads at the same moment end with one image; on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import threading
from typing import Any

import images
import pytest
from conftest import parse_json

from apercu.api import create_app
from apercu.config import Settings
from apercu.storage import blob_keys


@pytest.fixture(params=["sqlite", "postgres"])
def app(request: pytest.FixtureRequest, settings: Settings) -> Any:
    settings = settings.with_overrides(dedup="reuse")
    if request.param == "postgres":
        settings = settings.with_overrides(database_url=request.getfixturevalue("fresh_postgres_url"))
    return create_app(settings)


def post(app: Any, data: bytes) -> Any:
    return app.test_client().post("/images", data={"file": (io.BytesIO(data), "same.jpg")})


def originals(app: Any) -> list[str]:
    return list(app.extensions["apercu"].storage.blobs.keys(blob_keys.ORIGINALS))


def test_the_same_bytes_get_the_stored_image(app: Any) -> None:
    data, other = images.jpeg((640, 480)), images.png_rgba()
    first, again, different = post(app, data), post(app, data), post(app, other)
    assert first.status_code == 202 and "duplicate" not in parse_json(first)
    assert again.status_code == 200 and parse_json(again)["duplicate"] is True
    assert parse_json(again)["id"] == parse_json(first)["id"] and again.headers["Location"].endswith(
        parse_json(first)["id"])
    assert different.status_code == 202 and parse_json(different)["id"] != parse_json(first)["id"]
    assert len(originals(app)) == 2
    sha = app.extensions["apercu"].storage.catalog.images.get(parse_json(first)["id"]).sha256
    assert sha and len(sha) == 64  # known at upload, before processing


def test_identical_uploads_at_the_same_moment_make_one_image(app: Any) -> None:
    data = images.jpeg((1200, 900))
    answers: list[Any] = []
    start = threading.Barrier(8)

    def send() -> None:
        start.wait()
        answers.append(post(app, data))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] * 7 + [202]
    assert len({parse_json(a)["id"] for a in answers}) == 1
    assert len(originals(app)) == 1  # the losers' copies are gone too
    assert len(parse_json(app.test_client().get("/images"))["items"]) == 1


def test_a_deleted_image_frees_its_bytes_for_a_new_one(app: Any) -> None:
    data = images.jpeg((320, 240))
    first = parse_json(post(app, data))["id"]
    assert app.test_client().delete(f"/images/{first}").status_code == 204
    again = post(app, data)
    assert again.status_code == 202 and parse_json(again)["id"] != first


def test_without_dedup_the_same_bytes_make_two_images(settings: Settings) -> None:
    app = create_app(settings)
    data = images.jpeg((320, 240))
    assert post(app, data).status_code == post(app, data).status_code == 202
    assert len(originals(app)) == 2


def test_the_catalog_lets_one_image_claim_a_content(app: Any) -> None:
    """The race's last line of defence, without the look-up that usually answers first: the second claim of a
    content in the catalog is refused and told which image holds it, whatever key it carries."""
    from apercu.storage.catalog import ExclusiveClaims, Holder

    catalog = app.extensions["apercu"].storage.catalog
    sha = "ab" * 32
    first, holder = catalog.claims.add_image("1" * 32, "a.jpg", ExclusiveClaims(sha256=sha))
    assert holder is None
    second, holder = catalog.claims.add_image("2" * 32, "b.jpg", ExclusiveClaims(key="k", sha256=sha))
    assert holder is Holder.CONTENT and second.id == first.id
    assert catalog.images.get("2" * 32) is None and catalog.claims.image_for_key("k", None) is None  # nothing of it was kept


def test_bytes_whose_image_failed_make_a_new_image(app: Any) -> None:
    """A failure may have been passing (a time limit under load): the next upload of the bytes tries again."""
    data = images.jpeg((320, 240))
    first = parse_json(post(app, data))["id"]
    assert app.extensions["apercu"].storage.catalog.leases.fail(first, "the time limit, under load", webhook_url="")
    again = post(app, data)
    assert again.status_code == 202 and parse_json(again)["id"] != first
    assert post(app, data).status_code == 200  # and the new image is the one kept from now on
