"""The `?wait=` poller: a waiter wakes when its image settles, without a catalog query per poll."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from apercu.storage.catalog import Catalog
from apercu.storage.migrations.schema import create_schema
from apercu.storage.watcher import Watcher

INTERVAL = 0.02


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Catalog:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    if request.param == "postgres":
        url = request.getfixturevalue("fresh_postgres_url")
    catalog = Catalog.from_url(url)
    create_schema(catalog.engine)
    return catalog


def counting_queries(catalog: Catalog) -> list[int]:
    calls: list[int] = []
    real = catalog.images.settled_among

    def counted(ids: list[str]) -> set[str]:
        calls.append(len(ids))
        return real(ids)

    catalog.images.settled_among = counted  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("settle", ["fail", "delete"])
def test_a_settled_image_wakes_its_waiter_without_a_query_per_poll(catalog: Catalog, settle: str) -> None:
    image_id, other = uuid.uuid4().hex, uuid.uuid4().hex
    catalog.images.add(image_id, None)
    catalog.images.add(other, None)
    calls = counting_queries(catalog)
    watcher = Watcher(catalog, interval=INTERVAL, recheck=60)
    woke: dict[str, Any] = {}

    def wait() -> None:
        woke["settled"] = watcher.wait(image_id, 10)
        woke["at"] = time.monotonic()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(20 * INTERVAL)  # the poller's first look, then some twenty polls of an idle catalog
    assert calls == [1]  # one look for the newcomer; nothing committed since, so no query
    catalog.leases.fail(other, "not the awaited image", webhook_url="")  # a change that settles someone else's image
    time.sleep(5 * INTERVAL)
    settled_at = time.monotonic()
    if settle == "fail":
        catalog.leases.fail(image_id, "settled", webhook_url="")
    else:
        catalog.images.delete(image_id)
    waiter.join(5)
    assert woke["settled"] is True and woke["at"] - settled_at < 0.5
    # PostgreSQL names the settled images: no query at all. SQLite says something changed: one query each time.
    assert len(calls) <= (1 if catalog.engine.dialect.name == "postgresql" else 3), calls


def test_a_waiter_times_out_when_nothing_settles(catalog: Catalog) -> None:
    image_id = uuid.uuid4().hex
    catalog.images.add(image_id, None)
    started = time.monotonic()
    assert Watcher(catalog, interval=INTERVAL).wait(image_id, 0.3) is False
    assert 0.3 <= time.monotonic() - started < 1.0
