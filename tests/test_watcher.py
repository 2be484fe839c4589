"""The `?wait=` poller: a waiter wakes when its image settles, or its render ends, without a catalog query per
poll."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from apercu.storage import blob_keys
from apercu.storage.catalog import Catalog, ImageStatus, Outline, RenderRequest, RenderState, utcnow
from apercu.storage.catalog.images import ImageRecord
from apercu.storage.catalog.settling import UNSETTLED_IMAGES
from apercu.storage.catalog.tables import images
from apercu.storage.migrations.schema import create_schema
from apercu.storage.outages import classify
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
    real = catalog.settling.settled_among

    def counted(names: list[str]) -> set[str]:
        calls.append(len(names))
        return real(names)

    catalog.settling.settled_among = counted  # type: ignore[method-assign]
    return calls


def first_look_then_idle(calls: list[int]) -> None:
    """Wait for the poller's first look (a loaded machine may start its thread late), then some twenty polls of
    an idle catalog."""
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(INTERVAL)
    time.sleep(20 * INTERVAL)


@pytest.mark.parametrize("settle", ["fail", "delete"])
def test_a_settled_image_wakes_its_waiter_without_a_query_per_poll(catalog: Catalog, settle: str) -> None:
    image_id, other = uuid.uuid4().hex, uuid.uuid4().hex
    catalog.images.add(image_id, None)
    catalog.images.add(other, None)
    calls = counting_queries(catalog)
    watcher = Watcher(catalog, interval=INTERVAL, recheck=60)
    woke: dict[str, Any] = {}

    def wait() -> None:
        with watcher.watching(image_id) as settled:
            woke["settled"] = settled(10)
        woke["at"] = time.monotonic()

    waiter = threading.Thread(target=wait)
    waiter.start()
    first_look_then_idle(calls)
    assert calls == [1]  # one look when the feed opens; nothing committed since, so no query
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
    with Watcher(catalog, interval=INTERVAL).watching(image_id) as settled:
        assert settled(0.3) is False
    assert 0.3 <= time.monotonic() - started < 1.0


def requested(catalog: Catalog, image_id: str, size: int) -> str:
    """A render asked for, as a first request does: its name (blob key)."""
    key = blob_keys.thumbnail(image_id, size, "webp")
    assert catalog.renders.request(image_id, key, utcnow() - timedelta(hours=1)).state is RenderState.SEND
    return key


@pytest.mark.parametrize("end", ["stored", "failed"])
def test_a_render_that_ends_wakes_its_waiter_through_the_feed(catalog: Catalog, end: str) -> None:
    """A render's end is announced under its own name: it wakes who waits for that render at once, whether it
    was stored or failed (without waiting out the timeout), and neither its image's waiters nor another render's."""
    image_id = uuid.uuid4().hex
    catalog.images.add(image_id, None)
    key, other = requested(catalog, image_id, 128), requested(catalog, image_id, 512)
    calls = counting_queries(catalog)
    watcher = Watcher(catalog, interval=INTERVAL, recheck=60)
    woke: dict[str, Any] = {}

    def wait(name: str) -> None:
        with watcher.watching(name) as settled:
            woke[name] = settled(10)
        woke[f"{name} at"] = time.monotonic()

    waiters = {name: threading.Thread(target=wait, args=(name,)) for name in (key, image_id)}
    for waiter in waiters.values():
        waiter.start()
    first_look_then_idle(calls)
    assert calls in ([1], [2])  # a look when the feed opens (for whoever waits by then); nothing committed since
    looks = len(calls)
    catalog.renders.done(image_id, other, 3)
    time.sleep(5 * INTERVAL)
    assert woke == {}
    ended_at = time.monotonic()
    if end == "stored":
        catalog.renders.done(image_id, key, 3)
    else:
        catalog.renders.failed(image_id, key, "cannot decode")
    waiters[key].join(5)
    assert woke[key] is True and woke[f"{key} at"] - ended_at < 0.5
    assert image_id not in woke  # a render's name is not its image's
    assert len(calls) - looks <= (0 if catalog.engine.dialect.name == "postgresql" else 2), calls
    if end == "failed":  # the waiter's request reads the reason
        assert catalog.renders.request(image_id, key, utcnow()) == RenderRequest(RenderState.FAILED, "cannot decode")
    catalog.images.delete(image_id)
    waiters[image_id].join(5)
    assert woke[image_id] is True


def test_a_render_is_settled_once_stored_failed_or_its_image_deleted(catalog: Catalog) -> None:
    """What the poller's fallback query (SQLite, a missed notification) says about renders, one query for all."""
    image_id, gone = uuid.uuid4().hex, uuid.uuid4().hex
    for each in (image_id, gone):
        catalog.images.add(each, None)
    pending, stored, failed = (requested(catalog, image_id, size) for size in (128, 256, 512))
    deleted = requested(catalog, gone, 128)
    catalog.renders.done(image_id, stored, 3)
    catalog.renders.done(image_id, stored, 5)  # a render delivered twice, stored twice: kept once, as last stored
    assert catalog.kept.total() == 5 and catalog.kept.least_used(10) == [(stored, 5)]
    catalog.renders.failed(image_id, failed, "cannot decode")
    catalog.images.delete(gone)
    names = [pending, stored, failed, deleted, image_id, gone]
    assert catalog.settling.settled_among(names) == {stored, failed, deleted, gone}


def test_a_render_stored_since_the_caller_looked_is_not_asked_for_again(catalog: Catalog) -> None:
    """A request that found no file while a worker was storing it must not take the row the worker's `done` just
    removed for "never asked": that rendered the variant twice for concurrent first requests. It hears KEPT; once
    the kept record is forgotten (its file gone from the store), the next request sends the render again."""
    image_id = uuid.uuid4().hex
    catalog.images.add(image_id, None)
    key = requested(catalog, image_id, 256)
    catalog.renders.done(image_id, key, 3)
    again = utcnow() - timedelta(hours=1)
    assert catalog.renders.request(image_id, key, again).state is RenderState.KEPT
    catalog.kept.forget([key])
    assert catalog.renders.request(image_id, key, again).state is RenderState.SEND


def test_an_outline_reads_status_name_and_size_without_the_json(catalog: Catalog) -> None:
    """`Images.outline` (a rendition's request) gives what `get` gives of those, on both databases."""
    image_id = uuid.uuid4().hex
    catalog.images.add(image_id, "café.jpg")
    assert catalog.images.outline(image_id) == Outline(ImageStatus.PENDING, None, "café.jpg", None, None)
    catalog.leases.claim(image_id, "task", 60, 3)
    assert catalog.leases.finish(image_id, "task", {"width": 1800, "height": 1200, "exif": {}}, {}, webhook_url="")
    outline = catalog.images.outline(image_id)
    assert outline == Outline(ImageStatus.SUCCESS, None, "café.jpg", 1800, 1200) and outline.settled
    assert catalog.images.outline(uuid.uuid4().hex) is None


def new_image(catalog: Catalog) -> str:
    image_id = uuid.uuid4().hex
    catalog.images.add(image_id, "photo.jpg")
    return image_id


def test_settled_images_are_those_the_statement_finds_settled(catalog: Catalog) -> None:
    """The poller's query runs as text compiled once per number of names, on the driver (`catalog.prepared`): it
    must answer exactly what the SQLAlchemy statement answers, for every status and for however many names."""
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


def test_an_image_read_on_the_driver_is_the_record_sqlalchemy_reads(catalog: Catalog) -> None:
    """`images.get` runs on the driver (`catalog.prepared`) with each column's own processing: the same record as
    through SQLAlchemy (datetimes, JSON, statuses), within its tenant and not in another's."""
    image_id = new_image(catalog)
    catalog.leases.claim(image_id, "task", 600, 3)
    facts = {"width": 4, "height": 3, "exif": {"Make": "café"}, "phash": "8000000000000001"}
    assert catalog.leases.finish(image_id, "task", facts, {"key": "k", "bytes": 9}, webhook_url="")
    with catalog.engine.connect() as conn:
        expected = ImageRecord.of(conn.execute(sa.select(images).where(images.c.id == image_id)).one())
    assert catalog.images.get(image_id) == expected and expected.processed_at is not None
    assert catalog.images.get(image_id, expected.tenant) == expected
    assert catalog.images.get(image_id, "another") is None and catalog.images.get(uuid.uuid4().hex) is None


def test_what_settles_once_watched_wakes_even_before_the_wait(catalog: Catalog) -> None:
    """A waiter reads, then waits: whatever settles from the moment it watches wakes it, however soon (between its
    read and its wait, and before the poller has even opened its feed), within a poll, not at the recheck."""
    watcher = Watcher(catalog, interval=INTERVAL, recheck=60)
    for _ in range(2):  # (the second time, on the feed the first opened)
        image_id = new_image(catalog)
        with watcher.watching(image_id) as settled:
            outline = catalog.images.outline(image_id)
            assert outline is not None and not outline.settled  # what the waiter read
            catalog.leases.fail(image_id, "settled before the wait", webhook_url="")
            started = time.monotonic()
            assert settled(10) is True
            assert time.monotonic() - started < 5


def test_a_render_request_is_pending_until_taken_for_lost(catalog: Catalog) -> None:
    """A render asked for again while queued is PENDING; once its request counts as lost, the next one sends it
    again and dates the request anew (the statements are built once, with bound parameters)."""
    image_id = new_image(catalog)
    key = requested(catalog, image_id, 128)
    assert catalog.renders.request(image_id, key, utcnow() - timedelta(hours=1)).state is RenderState.PENDING
    assert catalog.renders.request(image_id, key, utcnow() + timedelta(seconds=1)).state is RenderState.SEND
    assert catalog.renders.request(image_id, key, utcnow() - timedelta(hours=1)).state is RenderState.PENDING


@pytest.mark.parametrize("url", ["sqlite:///{tmp}/no/such/folder/catalog.sqlite", "postgresql://apercu@127.0.0.1:1/test"])
def test_a_read_on_the_driver_fails_as_the_catalogs_outage(url: str, tmp_path: Path) -> None:
    """The driver's own error, raised as SQLAlchemy raises it: what the routes answer 503 catalog_unavailable for."""
    catalog = Catalog.from_url(url.format(tmp=tmp_path))
    for read in (lambda: catalog.images.get(uuid.uuid4().hex), lambda: catalog.settling.settled_among(["x" * 32])):
        with pytest.raises(sa.exc.OperationalError) as raised:
            read()
        assert classify(raised.value) == "catalog"
