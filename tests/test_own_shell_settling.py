"""On SQLite, the `?wait` poller's query of which awaited images settled runs as plain SQL on the driver
(`catalog.settling`): it must answer exactly what the SQLAlchemy statement answers, for every status and for
however many names."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from apercu.storage.catalog import Catalog
from apercu.storage.catalog.settling import UNSETTLED_IMAGES
from apercu.storage.migrations.schema import create_schema


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    catalog = Catalog.from_url(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    create_schema(catalog.engine)
    return catalog


def new_image(catalog: Catalog) -> str:
    image_id = uuid.uuid4().hex
    catalog.images.add(image_id, "photo.jpg")
    return image_id


def test_settled_images_on_sqlite_are_those_the_statement_finds_settled(catalog: Catalog) -> None:
    pending, processing, failed, deleted = (new_image(catalog) for _ in range(4))
    catalog.leases.claim(processing, "task", 600, 3)
    catalog.leases.fail(failed, "broken", webhook_url="")
    catalog.images.delete(deleted)
    unknown = uuid.uuid4().hex
    names = [pending, processing, failed, deleted, unknown]
    assert catalog.settling.settled_among(names) == {failed, deleted, unknown}
    with catalog.engine.connect() as conn:
        unsettled = set(conn.scalars(UNSETTLED_IMAGES, {"names": names}))
    assert unsettled == {pending, processing}
    for count in (1, 2, 5):  # each number of names has a text of its own
        assert catalog.settling.settled_among(names[:count]) == set(names[:count]) - unsettled
