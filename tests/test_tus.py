"""Resumable uploads (tus 1.0.0 at /uploads/, issue 20 items 1, 2 and 4) on the embedded default, through the app:
every status the protocol answers, the checksum extension, the image made by the last byte (the same path as
POST /images: 415 for bytes that are no image, idempotency, the file name), the cap of open uploads, the claim
that lets one request write at a time, and the expiry sweep. tests/test_tus_live.py uploads with a real tus client
(tuspy) against real processes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from datetime import timedelta
from typing import Any

import images
from conftest import parse_json

from apercu.api import create_app, tus
from apercu.config import Settings
from apercu.storage.catalog import utcnow
from apercu.storage.partials import sweep_expired

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET = "application/offset+octet-stream"


def metadata(**pairs: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in pairs.items())


def create(client: Any, length: int, **headers: str) -> Any:
    return client.post("/uploads/", headers=TUS | {"Upload-Length": str(length)} | headers)


def patch(client: Any, location: str, offset: int, data: bytes, **headers: str) -> Any:
    sent = TUS | {"Upload-Offset": str(offset), "Content-Type": OFFSET} | headers
    return client.patch(location, data=data, headers=sent)


def head(client: Any, location: str) -> Any:
    return client.head(location, headers=TUS)


def error_code(response: Any) -> str:
    code: str = parse_json(response)["error"]["code"]
    return code


def test_options_lists_the_protocol(client: Any, settings: Settings) -> None:
    response = client.options("/uploads/")
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "termination", "expiration", "checksum"}
    assert response.headers["Tus-Max-Size"] == str(settings.max_upload_bytes)
    assert response.headers["Tus-Checksum-Algorithm"] == "sha1,sha256"


def test_an_upload_in_pieces_becomes_an_image_named_by_its_metadata(client: Any) -> None:
    data = images.jpeg((640, 480))
    created = create(client, len(data), **{"Upload-Metadata": metadata(filename="holiday.jpg")})
    assert created.status_code == 201 and created.headers["Tus-Resumable"] == "1.0.0"
    assert created.headers["Upload-Offset"] == "0" and "Upload-Expires" in created.headers
    location = created.headers["Location"]
    assert location.startswith("/uploads/")
    half = len(data) // 2
    first = patch(client, location, 0, data[:half])
    assert (first.status_code, first.headers["Upload-Offset"]) == (204, str(half))
    assert "Apercu-Image-Id" not in first.headers
    status = head(client, location)
    assert (status.status_code, status.headers["Upload-Offset"], status.headers["Upload-Length"]) == (
        200, str(half), str(len(data)))
    assert status.headers["Cache-Control"] == "no-store"
    assert status.headers["Upload-Metadata"] == metadata(filename="holiday.jpg")
    last = patch(client, location, half, data[half:])
    assert last.status_code == 204 and last.headers["Upload-Offset"] == str(len(data))
    image_id = last.headers["Apercu-Image-Id"]
    assert last.headers["Link"] == f'</images/{image_id}>; rel="image"'
    after = head(client, location)
    assert after.headers["Apercu-Image-Id"] == image_id and after.headers["Link"] == last.headers["Link"]
    image = parse_json(client.get(f"/images/{image_id}"))
    assert image["filename"] == "holiday.jpg" and image["status"] == "pending"


def test_creation_with_upload_and_both_checksums(client: Any) -> None:
    data = images.jpeg((200, 100))
    sha1 = base64.b64encode(hashlib.sha1(data).digest()).decode()
    created = client.post("/uploads/", data=data, headers=TUS | {
        "Upload-Length": str(len(data)), "Content-Type": OFFSET, "Upload-Checksum": f"sha1 {sha1}"})
    assert created.status_code == 201 and created.headers["Upload-Offset"] == str(len(data))
    assert "Apercu-Image-Id" in created.headers
    again = images.jpeg((210, 100))
    location = create(client, len(again)).headers["Location"]
    sha256 = base64.b64encode(hashlib.sha256(again).digest()).decode()
    assert patch(client, location, 0, again, **{"Upload-Checksum": f"sha256 {sha256}"}).status_code == 204


def test_a_checksum_mismatch_is_460_and_appends_nothing(client: Any) -> None:
    data = images.jpeg()
    location = create(client, len(data)).headers["Location"]
    wrong = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
    refused = patch(client, location, 0, data[:100], **{"Upload-Checksum": f"sha256 {wrong}"})
    assert (refused.status_code, error_code(refused)) == (460, "checksum_mismatch")
    assert head(client, location).headers["Upload-Offset"] == "0"
    unknown = patch(client, location, 0, data[:100], **{"Upload-Checksum": "md5 AAAA"})
    assert (unknown.status_code, error_code(unknown)) == (400, "invalid_checksum")


def test_bytes_that_are_no_image_end_with_415_on_the_last_request(client: Any) -> None:
    data = b"this is not an image, " * 100
    location = create(client, len(data)).headers["Location"]
    assert patch(client, location, 0, data[:1000]).status_code == 204
    last = patch(client, location, 1000, data[1000:])
    assert (last.status_code, error_code(last)) == (415, "unsupported_format")
    direct = client.post("/images", data={"file": (io.BytesIO(data), "x.jpg")})
    assert parse_json(direct) == parse_json(last)  # the same answer as a direct upload of those bytes
    assert head(client, location).status_code == 404  # ended with its bytes


def test_the_same_idempotency_key_gives_the_same_image(client: Any) -> None:
    data = images.jpeg((300, 200))
    ids = []
    for _ in range(2):
        created = client.post("/uploads/", data=data, headers=TUS | {
            "Upload-Length": str(len(data)), "Content-Type": OFFSET, "Idempotency-Key": "tus-once"})
        ids.append(created.headers["Apercu-Image-Id"])
    assert ids[0] == ids[1]


def test_termination(client: Any, app: Any) -> None:
    data = images.jpeg()
    location = create(client, len(data)).headers["Location"]
    assert patch(client, location, 0, data[:500]).status_code == 204
    partial = app.extensions[tus.EXTENSION].partials.folder / location.rsplit("/", 1)[1]
    assert partial.exists()
    assert client.delete(location, headers=TUS).status_code == 204
    assert not partial.exists()
    assert head(client, location).status_code == 404
    gone = patch(client, location, 500, data[500:])
    assert (gone.status_code, error_code(gone)) == (404, "not_found")
    assert client.delete(location, headers=TUS).status_code == 404


def test_every_refusal_is_a_json_error(client: Any, settings: Settings) -> None:
    data = images.jpeg()
    location = create(client, len(data)).headers["Location"]
    cases = [
        (client.post("/uploads/", headers={"Upload-Length": "10"}), 412, "unsupported_tus_version"),
        (client.head(location, headers={"Tus-Resumable": "0.2.2"}), 412, None),
        (client.post("/uploads/", headers=TUS), 400, "invalid_upload_length"),
        (create(client, 0), 400, "invalid_upload_length"),
        (create(client, settings.max_upload_bytes + 1), 413, "too_large"),
        (create(client, 10, **{"Upload-Metadata": "filename not-base64!"}), 400, "invalid_upload_metadata"),
        (create(client, 10, **{"Upload-Metadata": "a YQ==,a YQ=="}), 400, "invalid_upload_metadata"),
        (patch(client, location, 5, data[:10]), 409, "offset_conflict"),
        (patch(client, location, 0, data[:10], **{"Content-Type": "application/octet-stream"}), 415,
         "unsupported_media_type"),
        (patch(client, location, 0, data + b"more"), 413, "too_large"),
        (client.patch(location, data=data, headers=TUS | {"Content-Type": OFFSET}), 400, "invalid_upload_offset"),
        (head(client, "/uploads/" + "0" * 32), 404, None),
        (head(client, "/uploads/not-an-id"), 404, None),
    ]
    for number, (response, status, code) in enumerate(cases):
        assert response.status_code == status, (number, response.status_code, response.get_data())
        assert response.headers["Tus-Resumable"] == "1.0.0", number
        if code is not None:  # (a HEAD's answer has no body)
            assert error_code(response) == code, number
    assert cases[0][0].headers["Tus-Version"] == "1.0.0"
    assert head(client, location).headers["Upload-Offset"] == "0"  # nothing refused was appended


def test_a_patch_while_another_holds_the_upload_is_409(client: Any, app: Any) -> None:
    """The claim is the catalog's: here taken as a PATCH on another web process would hold it."""
    data = images.jpeg()
    location = create(client, len(data)).headers["Location"]
    uploads = app.extensions["apercu"].storage.catalog.uploads
    upload_id = location.rsplit("/", 1)[1]
    assert uploads.claim(upload_id, 0, "other-process", utcnow() + timedelta(seconds=60)).value == "claimed"
    busy = patch(client, location, 0, data)
    assert (busy.status_code, error_code(busy)) == (409, "offset_conflict")
    assert "another request is writing" in parse_json(busy)["error"]["message"]
    uploads.release(upload_id, "other-process")
    assert patch(client, location, 0, data).status_code == 204


def test_open_uploads_are_capped_per_caller(settings: Settings) -> None:
    app = create_app(settings.with_overrides(max_open_uploads=2))
    client = app.test_client()
    made = [create(client, 100).headers["Location"] for _ in range(2)]
    refused = create(client, 100)
    assert (refused.status_code, error_code(refused)) == (429, "too_many_uploads")
    assert "Retry-After" in refused.headers
    client.delete(made[0], headers=TUS)
    assert create(client, 100).status_code == 201  # a terminated one no longer counts
    data = images.jpeg()
    done = client.post("/uploads/", data=data, headers=TUS | {"Upload-Length": str(len(data)), "Content-Type": OFFSET})
    assert done.status_code == 429  # still two open


def test_an_expired_upload_is_refused_then_swept_with_its_bytes(settings: Settings) -> None:
    app = create_app(settings.with_overrides(upload_expiry=1))
    client = app.test_client()
    data = images.jpeg()
    location = create(client, len(data)).headers["Location"]
    assert patch(client, location, 0, data[:300]).status_code == 204
    finished = client.post("/uploads/", data=data, headers=TUS | {"Upload-Length": str(len(data)),
                                                                  "Content-Type": OFFSET})
    resumable = app.extensions[tus.EXTENSION]
    partial = resumable.partials.folder / location.rsplit("/", 1)[1]
    assert partial.exists()
    time.sleep(1.5)
    expired = patch(client, location, 300, data[300:])
    assert (expired.status_code, error_code(expired)) == (410, "upload_expired")
    assert head(client, finished.headers["Location"]).headers["Apercu-Image-Id"]  # a finished one still answers
    catalog = app.extensions["apercu"].storage.catalog
    assert sweep_expired(catalog.uploads, resumable.partials) == 2
    assert not partial.exists() and head(client, location).status_code == 404
    assert catalog.images.get(finished.headers["Apercu-Image-Id"]) is not None  # its image stays


def test_keys_scopes_and_tenants_apply(settings: Settings, tmp_path: Any) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("a ta write,read key-a\nb tb write,read key-b\nr ta read key-r\n")
    client = create_app(settings.with_overrides(api_keys_file=str(key_file))).test_client()
    assert create(client, 10).status_code == 401
    assert create(client, 10, **{"X-API-Key": "key-r"}).status_code == 403
    data = images.jpeg()
    location = create(client, len(data), **{"X-API-Key": "key-a"}).headers["Location"]
    other = patch(client, location, 0, data, **{"X-API-Key": "key-b"})
    assert (other.status_code, error_code(other)) == (404, "not_found")
    done = patch(client, location, 0, data, **{"X-API-Key": "key-a"})
    image = parse_json(client.get(f"/images/{done.headers['Apercu-Image-Id']}", headers={"X-API-Key": "key-a"}))
    assert image["status"] == "pending"
    assert client.get(f"/images/{image['id']}", headers={"X-API-Key": "key-b"}).status_code == 404


def test_a_creation_counts_as_an_upload_for_the_rate_limit(settings: Settings) -> None:
    client = create_app(settings.with_overrides(upload_rate_limit=1)).test_client()
    answers = [create(client, 10) for _ in range(3)]  # (at least two within one minute's window)
    refused = [answer for answer in answers if answer.status_code == 429]
    assert refused and error_code(refused[0]) == "rate_limited" and "RateLimit-Limit" in refused[0].headers
    assert answers[0].status_code == 201


def test_a_creation_is_refused_while_the_queue_is_full(settings: Settings) -> None:
    client = create_app(settings).test_client()
    for _ in range(2):
        assert client.post("/images", data={"file": (io.BytesIO(images.jpeg()), "a.jpg")}).status_code == 202
    busy = create_app(settings.with_overrides(max_pending=1)).test_client()
    refused = create(busy, 10)
    assert (refused.status_code, error_code(refused)) == (503, "busy")


def test_an_upload_whose_image_was_not_made_makes_it_on_the_next_head(client: Any, app: Any) -> None:
    """Every byte stored, then the image could not be made (here: its claim was held, as by a request that died
    after storing the bytes): HEAD says where it stands meanwhile, and makes the image once the claim is free."""
    data = images.jpeg()
    location = create(client, len(data)).headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    uploads = app.extensions["apercu"].storage.catalog.uploads
    resumable = app.extensions[tus.EXTENSION]
    upload = uploads.get(upload_id, None)
    assert uploads.claim(upload_id, 0, "dead", utcnow() + timedelta(seconds=60)).value == "claimed"
    progress = resumable.partials.write(upload, io.BytesIO(data), len(data))
    assert uploads.advance(upload_id, "dead", len(data), progress)
    waiting = head(client, location)
    assert waiting.headers["Upload-Offset"] == str(len(data)) and "Apercu-Image-Id" not in waiting.headers
    uploads.release(upload_id, "dead")
    made = head(client, location)
    assert made.status_code == 200 and made.headers["Apercu-Image-Id"]
    assert parse_json(client.get(f"/images/{made.headers['Apercu-Image-Id']}"))["status"] == "pending"
