"""A render's end and its image's delete, in either order: what was stored goes with the image.

The worker writes a render's blob, then records it done (`Renders.done`); when that found the render's request
still recorded, the image was too (a delete removes both in one transaction), so the delete that comes after it
removes the blob; otherwise the worker removes what it wrote (`Storage.forget_if_unrecorded`)."""

from __future__ import annotations

from typing import Any

import images
from conftest import parse_json
from test_api import stored_keys, upload

from apercu.storage import blob_keys


def _requested(client: Any, process: Any) -> str:
    """A processed image with a 512 px variant asked for (its render queued, not run)."""
    image_id = parse_json(upload(client, images.jpeg((1200, 900))))["id"]
    process(image_id)
    assert client.get(f"/thumbnails/{image_id}.jpg?size=512").status_code == 409
    return str(image_id)


def test_a_render_that_ends_after_its_image_was_deleted_leaves_nothing(
    app: Any, client: Any, process: Any, render: Any
) -> None:
    image_id = _requested(client, process)
    storage = app.extensions["apercu"].storage
    assert storage.catalog.images.delete(image_id)  # the rows only: a delete whose file removal has not run yet
    storage.delete_files(image_id)
    assert render(image_id) == [(512, "jpg")]  # (the original is gone: the render records its failure)
    assert stored_keys(app, image_id) == []


def test_a_render_that_ends_while_its_rows_are_gone_removes_its_blob(
    app: Any, client: Any, process: Any, render: Any
) -> None:
    image_id = _requested(client, process)
    storage = app.extensions["apercu"].storage
    assert storage.catalog.images.delete(image_id)  # the delete's rows went; its files' removal ran before the render
    assert render(image_id) == [(512, "jpg")]  # rendered from the original still there, then found unrecorded
    assert stored_keys(app, image_id) == []


def test_a_render_kept_for_a_live_image_goes_with_its_delete(
    app: Any, client: Any, process: Any, render: Any
) -> None:
    image_id = _requested(client, process)
    assert render(image_id) == [(512, "jpg")]
    assert blob_keys.thumbnail(image_id, 512, "jpg") in stored_keys(app, image_id)
    assert client.delete(f"/images/{image_id}").status_code == 204
    assert stored_keys(app, image_id) == []
