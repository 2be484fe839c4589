"""Finding images by content: GET /images?sha256= and ?similar_to=<id>&max_distance=N, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from typing import Any

import pytest
from conftest import parse_json
from test_fingerprints import copies, scene

from apercu.api import create_app
from apercu.config import Settings
from apercu.tasks import context_of


@pytest.fixture(params=["sqlite", "postgres"])
def client(request: pytest.FixtureRequest, settings: Settings) -> Any:
    if request.param == "postgres":
        settings = settings.with_overrides(database_url=request.getfixturevalue("fresh_postgres_url"))
    app = create_app(settings)
    client = app.test_client()
    client.processed = lambda image_id: context_of(app.extensions["apercu"].celery).processor.process(image_id, owner="t")
    return client


def jpeg(img: Any) -> bytes:
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def uploaded(client: Any, data: bytes, name: str) -> str:
    image_id: str = parse_json(client.post("/images", data={"file": (io.BytesIO(data), name)}))["id"]
    client.processed(image_id)
    return image_id


def test_images_are_found_by_the_sha256_of_their_bytes(client: Any) -> None:
    data = jpeg(scene(1))
    first, second, other = uploaded(client, data, "a.jpg"), uploaded(client, data, "b.jpg"), uploaded(
        client, jpeg(scene(2)), "c.jpg")
    digest = parse_json(client.get(f"/images/{first}"))["metadata"]["sha256"]
    found = parse_json(client.get(f"/images?sha256={digest.upper()}"))
    assert [item["id"] for item in found["items"]] == [second, first]  # newest first; case does not matter
    assert other not in {item["id"] for item in found["items"]}
    assert parse_json(client.get("/images?sha256=" + "0" * 64))["items"] == []
    bad = client.get("/images?sha256=abc")
    assert bad.status_code == 400 and parse_json(bad)["error"]["code"] == "invalid_sha256"


def test_similar_images_are_found_nearest_first(client: Any) -> None:
    original = scene(3)
    anchor = uploaded(client, jpeg(original), "anchor.jpg")
    kin = {uploaded(client, jpeg(copy), f"{name}.jpg"): name for name, copy in copies(original).items()}
    strangers = {uploaded(client, jpeg(scene(seed)), f"other-{seed}.jpg") for seed in (4, 5, 6)}

    found = parse_json(client.get(f"/images?similar_to={anchor}&max_distance=10"))["items"]
    ids = [item["id"] for item in found]
    assert anchor in {item["id"] for item in found if item["distance"] == 0}  # (a recompressed copy may tie)
    assert set(ids) == {anchor, *kin}, "every copy found, no stranger"
    distances = [item["distance"] for item in found]
    assert distances == sorted(distances) and all(0 <= d <= 10 for d in distances)
    assert not strangers & set(ids)
    everything = parse_json(client.get(f"/images?similar_to={anchor}&max_distance=64"))["items"]
    assert {item["id"] for item in everything} == {anchor, *kin, *strangers}


def test_similar_to_refuses_what_it_cannot_answer(client: Any) -> None:
    pending = parse_json(client.post("/images", data={"file": (io.BytesIO(jpeg(scene(7))), "p.jpg")}))["id"]
    assert client.get(f"/images?similar_to={pending}").status_code == 409
    assert client.get("/images?similar_to=" + "0" * 32).status_code == 404
    bad = client.get(f"/images?similar_to={pending}&max_distance=65")
    assert bad.status_code == 400 and parse_json(bad)["error"]["code"] == "invalid_max_distance"
    broken = parse_json(client.post("/images", data={"file": (io.BytesIO(jpeg(scene(8))[:2000]), "b.jpg")}))["id"]
    client.processed(broken)
    refused = client.get(f"/images?similar_to={broken}")
    assert refused.status_code == 422 and parse_json(refused)["error"]["code"] == "no_phash"
