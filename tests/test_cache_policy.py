"""What caches may keep (`api.cache_policy`): with keys, whatever a key got is private and varies on the
authentication headers; signed renditions and public thumbnails stay public; without keys nothing changes; errors
are never stored. Through the Flask test client, on the embedded catalog and broker."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import images
import pytest
from conftest import parse_json
from test_rendition_route import signed, worker

from apercu.api import create_app
from apercu.config import Settings

URL_KEY = "k" * 32  # test_rendition_route's, which `signed` signs with
API_KEY = "an-api-key"
KEYED = {"X-API-Key": API_KEY}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}", url_key=URL_KEY,
                    api_keys=(API_KEY,))


def uploaded(client: Any, process: Any) -> tuple[Any, str]:
    answer = client.post("/images", data={"file": (io.BytesIO(images.jpeg()), "a.jpg")}, headers=KEYED)
    image_id = parse_json(answer)["id"]
    process(image_id)
    return answer, image_id


def assert_private(response: Any) -> None:
    assert response.cache_control.private and not response.cache_control.public, response.headers
    assert {"X-API-Key", "Authorization"} <= set(response.vary), response.headers


def assert_shared(response: Any) -> None:
    assert response.cache_control.public and not response.cache_control.private, response.headers
    assert not {"x-api-key", "authorization"} & {v.lower() for v in response.vary}, response.headers


def test_whatever_a_key_got_is_private(client: Any, process: Any) -> None:
    accepted, image_id = uploaded(client, process)
    assert accepted.status_code == 202
    assert_private(accepted)
    for path in (f"/images/{image_id}", "/images", f"/images?sha256={'0' * 64}", f"/thumbnails/{image_id}.jpg"):
        answer = client.get(path, headers=KEYED)
        assert answer.status_code == 200, path
        assert_private(answer)
    thumbnail = client.get(f"/thumbnails/{image_id}.jpg", headers={"Authorization": f"Bearer {API_KEY}"})
    assert_private(thumbnail)
    assert thumbnail.cache_control.max_age == 86400  # the route's lifetime stays; only who may keep it narrows
    again = client.get(f"/thumbnails/{image_id}.jpg", headers={**KEYED, "If-None-Match": thumbnail.headers["ETag"]})
    assert again.status_code == 304
    assert_private(again)
    # a public path asked with a key is private too (what it answers may depend on who asks); without, it varies
    assert_private(client.get("/openapi.json", headers=KEYED))
    anonymous = client.get("/openapi.json")
    assert not anonymous.cache_control.private and "X-API-Key" in anonymous.vary


def test_errors_stay_no_store(client: Any) -> None:
    for answer in (client.get("/images/" + "0" * 32, headers=KEYED), client.get("/images"),
                   client.get("/images?limit=0", headers=KEYED)):
        assert answer.status_code in (400, 401, 404)
        assert answer.headers.getlist("Cache-Control") == ["no-store"]


def test_signed_renditions_stay_public_with_a_key(client: Any, process: Any, render: Any) -> None:
    _, image_id = uploaded(client, process)
    with worker(render, image_id):
        shown = client.get(signed(f"/w:30/{image_id}.jpg"), headers=KEYED)
    assert shown.status_code == 200 and shown.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert_shared(shown)


@pytest.mark.parametrize("public_thumbnails", [True, False])
def test_public_thumbnails_stay_public(settings: Settings, process: Any, public_thumbnails: bool) -> None:
    client = create_app(settings.with_overrides(public_thumbnails=public_thumbnails)).test_client()
    _, image_id = uploaded(client, process)
    keyed = client.get(f"/thumbnails/{image_id}.jpg", headers=KEYED)
    assert keyed.status_code == 200
    if public_thumbnails:
        assert_shared(keyed)
        assert_shared(client.get(f"/thumbnails/{image_id}.jpg"))
    else:
        assert_private(keyed)


def test_without_keys_nothing_changes(settings: Settings, process: Any) -> None:
    client = create_app(settings.with_overrides(api_keys=())).test_client()
    _, image_id = uploaded(client, process)
    thumbnail = client.get(f"/thumbnails/{image_id}.jpg")
    assert_shared(thumbnail)
    assert thumbnail.headers["Cache-Control"] == "public, max-age=86400"
    status = client.get(f"/images/{image_id}")
    assert "Cache-Control" not in status.headers and "Vary" not in status.headers
