"""A resumable upload while its blob store is away (issues 17 and 20): a PATCH that cannot store its bytes is a
503 `storage_unavailable` with Retry-After, never a 500, and appends nothing; once the store is back the client
asks HEAD where the upload stands and sends the rest, and the image is made from exactly the file's bytes."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import parse_json
from test_outages_web import assert_unavailable
from test_tus import create, head, patch
from tus_helpers import noise_bmp

from apercu.api import create_app
from apercu.config import Settings
from apercu.storage import blob_keys

pytestmark = pytest.mark.integration
RECOVERY_TIMEOUT = 20.0


def test_a_patch_while_the_store_is_away_is_503_then_the_upload_goes_on(tmp_path: Path, own_seaweedfs: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data", storage_url=own_seaweedfs.storage_url(),
                        s3_endpoint_url=own_seaweedfs.endpoint_url)
    app = create_app(settings)
    client, service = app.test_client(), app.extensions["apercu"]
    data = noise_bmp(7)
    cut = 3 * 1024 * 1024
    location = create(client, len(data)).headers["Location"]
    assert patch(client, location, 0, data[:cut]).headers["Upload-Offset"] == str(cut)

    own_seaweedfs.stop()
    assert_unavailable(patch(client, location, cut, data[cut:]), "storage_unavailable")

    own_seaweedfs.restart()
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while (status := head(client, location)).status_code != 200 and time.monotonic() < deadline:
        assert status.status_code == 503, status.status_code  # refused while the breaker re-probes, never a 500
        time.sleep(0.2)
    assert status.status_code == 200 and status.headers["Upload-Offset"] == str(cut)  # nothing was appended
    while (last := patch(client, location, cut, data[cut:])).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.status_code == 204 and last.headers["Upload-Offset"] == str(len(data))
    image_id = last.headers["Apercu-Image-Id"]
    assert parse_json(client.get(f"/images/{image_id}"))["id"] == image_id
    with service.storage.blobs.open(blob_keys.original(image_id)) as stored:
        assert hashlib.sha256(stored.read()).hexdigest() == hashlib.sha256(data).hexdigest()
