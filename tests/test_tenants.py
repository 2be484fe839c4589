"""Tenants (issue 19, item 2): every image is its uploading key's tenant's; another tenant's image is a 404 exactly as
a missing one (same body, the same one query), in reads, thumbnails, waits, lists, searches and deletes; dedup,
similar_to and idempotency keys work within a tenant; admin sees every tenant; without keys nothing changes. On
the embedded catalog (SQLite) and PostgreSQL, through the API and through the service.

Who calls: a real key of the app's `APERCU_API_KEYS_FILE` (KEYS: `<name> <tenant> <scopes> <key>`), sent by `as_`;
the test of a deployment without keys has an app without the file (`keyless`).
"""

from __future__ import annotations

import io
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import images
import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from conftest import parse_json
from test_fingerprints import scene
from test_rendition_route import worker
from test_search import jpeg

from apercu.api import create_app
from apercu.config import Settings
from apercu.service import NotFound, Service
from apercu.storage import migrations
from apercu.storage.catalog import DEFAULT_TENANT, Catalog, ExclusiveClaims, create_engine
from apercu.storage.migrations.schema import migrate
from apercu.tasks import context_of

# Who calls, by the key `as_` sends (key-<who>): tenants a and b, and an admin in a tenant of its own.
KEYS = "app-a a read,write,delete key-a\napp-b b read,write,delete key-b\nops ops admin key-admin\n"
MISSING = "0123456789abcdef0123456789abcdef"
URL_KEY = "u" * 32


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    """With a URL key, so that images carry the page's signed `views`, and webhooks to this machine."""
    return Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}", url_key=URL_KEY,
                    rendition_wait=10, webhook_secret="s", webhook_allowed_hosts="127.0.0.1")


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The settings with dedup, on the embedded catalog or PostgreSQL."""
    settings = settings.with_overrides(dedup="reuse")
    if request.param == "postgres":
        settings = settings.with_overrides(database_url=request.getfixturevalue("fresh_postgres_url"))
    return settings


def keyed_app(settings: Settings, tmp_path: Any, **overrides: Any) -> Any:
    """An app whose keys are KEYS."""
    keys = tmp_path / "keys"
    keys.write_text(KEYS)
    return create_app(settings.with_overrides(api_keys_file=str(keys), **overrides))


@pytest.fixture
def app(catalog_settings: Settings, tmp_path: Any) -> Any:
    return keyed_app(catalog_settings, tmp_path)


@pytest.fixture
def keyless(catalog_settings: Settings) -> Any:
    """An app without keys, as every deployment was before them."""
    return create_app(catalog_settings)


@pytest.fixture
def service(app: Any) -> Service:
    found: Service = app.extensions["apercu"]
    return found


def as_(who: str | None) -> dict[str, str]:
    """The headers of a request by `who` (None: no key)."""
    return {} if who is None else {"X-API-Key": f"key-{who}"}


def upload(app: Any, who: str | None, data: bytes, **headers: str) -> Any:
    return app.test_client().post("/images", data={"file": (io.BytesIO(data), "x.jpg")}, headers=as_(who) | headers)


def uploaded(app: Any, who: str | None, data: bytes) -> str:
    """An image of `who`'s tenant, processed."""
    response = upload(app, who, data)
    assert response.status_code == 202, response.get_data(as_text=True)
    image_id: str = parse_json(response)["id"]
    context_of(app.extensions["apercu"].celery).processor.process(image_id, owner="test")
    return image_id


def get(app: Any, who: str | None, path: str) -> Any:
    return app.test_client().get(path, headers=as_(who))


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["id"] for item in parse_json(response)["items"]]


def test_another_tenants_image_is_a_404_like_a_missing_one(app: Any) -> None:
    theirs = uploaded(app, "a", images.jpeg((320, 240)))
    missing = get(app, "b", f"/images/{MISSING}")
    assert missing.status_code == 404
    for path in (f"/images/{theirs}", f"/images/{theirs}?wait=1", f"/thumbnails/{theirs}.jpg",
                 f"/thumbnails/{theirs}.webp?size=128&wait=1", f"/images?similar_to={theirs}"):
        answer = get(app, "b", path)
        assert (answer.status_code, answer.get_data()) == (404, missing.get_data()), path
    deleted = app.test_client().delete(f"/images/{theirs}", headers=as_("b"))
    assert (deleted.status_code, deleted.get_data()) == (404, missing.get_data())
    assert app.test_client().delete(f"/delete/{theirs}", headers=as_("b")).status_code == 404
    assert get(app, "a", f"/images/{theirs}").status_code == 200  # still there, untouched
    assert get(app, "a", f"/thumbnails/{theirs}.jpg").status_code == 200


def test_public_thumbnails_are_served_to_whoever_asks(catalog_settings: Settings, tmp_path: Any) -> None:
    """APERCU_PUBLIC_THUMBNAILS: a thumbnail's URL works without a key and with any tenant's, as <img> tags need
    (it was a 404 for every tenant but the default one); the image itself stays its tenant's."""
    app = keyed_app(catalog_settings, tmp_path, public_thumbnails=True)
    theirs = uploaded(app, "a", images.jpeg((320, 240)))
    for who in (None, "b", "a"):
        answer = get(app, who, f"/thumbnails/{theirs}.jpg")
        assert (answer.status_code, answer.mimetype) == (200, "image/jpeg"), who
    assert get(app, "b", f"/images/{theirs}").status_code == 404
    assert get(app, None, f"/images/{theirs}").status_code == 401


def test_another_tenants_pending_image_is_not_waited_for(app: Any) -> None:
    """?wait=N on another tenant's unsettled image answers 404 at once, as for a missing one: no wait that would
    tell it exists."""
    pending = parse_json(upload(app, "a", images.jpeg((300, 200))))["id"]
    started = time.monotonic()
    assert get(app, "b", f"/images/{pending}?wait=20").status_code == 404
    assert get(app, "b", f"/thumbnails/{pending}.jpg?wait=20").status_code == 404
    assert time.monotonic() - started < 10  # (two 20 s waits if it were waited for)
    assert parse_json(get(app, "a", f"/images/{pending}"))["status"] == "pending"


@pytest.fixture
def statements(service: Service) -> Iterator[list[str]]:
    """The SQL each request runs on the catalog (what reads an image by its id), its values masked, as the driver
    is given it: the hot reads run on the driver's own connection (`catalog.prepared`), past SQLAlchemy's events.
    SQLite traces each statement; on PostgreSQL, each checked-out connection's cursors record theirs."""
    seen: list[str] = []
    engine = service.storage.catalog.engine

    def record(statement: str) -> None:
        if "FROM apercu_images" in statement and "apercu_images.id =" in statement:
            seen.append(re.sub(r"'[^']*'", "?", statement))

    class Recording(psycopg.Cursor):  # type: ignore[type-arg]
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            record(str(query))
            return super().execute(query, params, **kwargs)

    def traced(dbapi_connection: Any, *_args: Any) -> None:
        if engine.dialect.name == "sqlite":
            dbapi_connection.set_trace_callback(record)
        else:
            dbapi_connection.cursor_factory = Recording

    def untraced(dbapi_connection: Any, *_args: Any) -> None:
        if engine.dialect.name == "sqlite":
            dbapi_connection.set_trace_callback(None)
        else:
            dbapi_connection.cursor_factory = psycopg.Cursor

    sa.event.listen(engine, "checkout", traced)
    sa.event.listen(engine, "checkin", untraced)
    yield seen
    sa.event.remove(engine, "checkout", traced)
    sa.event.remove(engine, "checkin", untraced)


def test_another_tenants_image_is_looked_up_as_a_missing_one(app: Any, statements: list[str]) -> None:
    """The same one query for another tenant's image as for none at all, the tenant in its WHERE: nothing fetched
    and then compared, whose time could tell the two apart."""
    theirs = uploaded(app, "a", images.jpeg((320, 240)))
    statements.clear()
    get(app, "b", f"/images/{theirs}")
    for_theirs = list(statements)
    statements.clear()
    get(app, "b", f"/images/{MISSING}")
    assert for_theirs == statements and len(statements) == 1
    assert "apercu_images.tenant =" in statements[0]


def test_a_signed_rendition_url_is_not_scoped_to_a_tenant(app: Any, render: Any) -> None:
    """The signature is the grant: a view's URL that a tenant's page shows works for whoever holds it, as before
    keys (the image's own JSON, with those URLs, stays its tenant's)."""
    theirs = uploaded(app, "a", images.jpeg((640, 480)))
    tile = parse_json(get(app, "a", f"/images/{theirs}"))["views"]["tile"]["1x"]
    assert get(app, "b", f"/images/{theirs}").status_code == 404
    with worker(render, theirs):
        answer = get(app, "b", tile)
    assert answer.status_code == 200 and answer.mimetype.startswith("image/")


def test_lists_and_searches_show_only_the_callers_tenant(app: Any) -> None:
    same = jpeg(scene(7))
    a_first, a_same = uploaded(app, "a", images.jpeg((200, 100))), uploaded(app, "a", same)
    b_same = uploaded(app, "b", same)
    assert ids(get(app, "a", "/images")) == [a_same, a_first]
    assert ids(get(app, "b", "/images")) == [b_same]
    assert ids(get(app, "b", "/images?limit=1")) == [b_same]
    digest = parse_json(get(app, "a", f"/images/{a_same}"))["metadata"]["sha256"]
    assert ids(get(app, "a", f"/images?sha256={digest}")) == [a_same]
    assert ids(get(app, "b", f"/images?sha256={digest}")) == [b_same]
    assert ids(get(app, "a", f"/images?similar_to={a_same}&max_distance=10")) == [a_same]
    assert ids(get(app, "b", f"/images?similar_to={b_same}&max_distance=10")) == [b_same]
    assert set(ids(get(app, "admin", f"/images?similar_to={b_same}&max_distance=10"))) == {a_same, b_same}


def test_admin_sees_reads_and_deletes_every_tenant(app: Any) -> None:
    theirs, others = uploaded(app, "a", images.jpeg((320, 240))), uploaded(app, "b", images.jpeg((240, 320)))
    listed = parse_json(get(app, "admin", "/images"))["items"]
    assert [(item["id"], item["tenant"]) for item in listed] == [(others, "b"), (theirs, "a")]
    assert parse_json(get(app, "admin", f"/images/{theirs}"))["tenant"] == "a"
    assert "tenant" not in parse_json(get(app, "a", f"/images/{theirs}"))  # a tenant's own clients are not told
    assert get(app, "admin", f"/thumbnails/{others}.jpg").status_code == 200
    assert app.test_client().delete(f"/images/{theirs}", headers=as_("admin")).status_code == 204
    assert get(app, "a", f"/images/{theirs}").status_code == 404
    assert ids(get(app, "b", "/images")) == [others]


def test_dedup_never_answers_with_another_tenants_image(app: Any) -> None:
    data = images.jpeg((640, 480))
    first = upload(app, "a", data)
    other = upload(app, "b", data)
    again = upload(app, "b", data)
    assert first.status_code == 202 and other.status_code == 202, "another tenant's bytes are a new image"
    assert parse_json(other)["id"] != parse_json(first)["id"]
    assert again.status_code == 200 and parse_json(again) == parse_json(other) | {"duplicate": True}
    assert upload(app, "a", data).headers["Location"].endswith(parse_json(first)["id"])


def test_a_duplicates_webhook_is_registered_on_its_own_tenants_image(app: Any) -> None:
    """An uploader whose bytes another tenant stored is told of its own image, and nothing is added to theirs."""
    data, hook = images.jpeg((500, 300)), "http://127.0.0.1:9/"
    first = parse_json(upload(app, "a", data))["id"]
    own = parse_json(app.test_client().post("/images", headers=as_("b"), data={
        "file": (io.BytesIO(data), "x.jpg"), "callback_url": hook + "b"}))["id"]
    again = app.test_client().post("/images", headers=as_("b"), data={
        "file": (io.BytesIO(data), "x.jpg"), "callback_url": hook + "b-again"})
    assert parse_json(again)["id"] == own != first
    assert "webhooks" not in parse_json(get(app, "a", f"/images/{first}"))
    assert [d["url"] for d in parse_json(get(app, "b", f"/images/{own}"))["webhooks"]] == [hook + "b-again"]


def test_the_same_idempotency_key_in_two_tenants_makes_two_images(app: Any) -> None:
    key = {"Idempotency-Key": f"upload-{uuid.uuid4().hex}"}
    first = upload(app, "a", images.jpeg((320, 200)), **key)
    other = upload(app, "b", images.jpeg((200, 320)), **key)
    retried = upload(app, "b", images.jpeg((200, 320)), **key)
    assert (first.status_code, other.status_code) == (202, 202)
    assert parse_json(first)["id"] != parse_json(other)["id"]
    assert "Idempotent-Replayed" not in other.headers
    assert retried.headers["Idempotent-Replayed"] == "true" and parse_json(retried)["id"] == parse_json(other)["id"]
    assert get(app, "a", f"/images/{parse_json(other)['id']}").status_code == 404


def test_without_keys_there_is_one_tenant_and_nothing_changes(keyless: Any) -> None:
    """No keys: every image is the default tenant's, every client sees all of them, and the JSON is as it was (no
    tenant in it)."""
    app, service = keyless, keyless.extensions["apercu"]
    first, second = uploaded(app, None, images.jpeg((100, 100))), uploaded(app, None, images.jpeg((90, 90)))
    assert {getattr(service.storage.catalog.images.get(i), "tenant", None) for i in (first, second)} == {
        DEFAULT_TENANT}
    body = parse_json(get(app, None, f"/images/{second}"))
    assert "tenant" not in body and body["id"] == second and body["status"] == "success"
    assert ids(get(app, None, "/images")) == [second, first]
    key = {"Idempotency-Key": "same-key"}
    assert upload(app, None, images.jpeg((80, 80)), **key).status_code == 202
    assert upload(app, None, images.jpeg((80, 80)), **key).headers["Idempotent-Replayed"] == "true"
    assert upload(app, None, images.jpeg((100, 100))).headers["Location"].endswith(first)  # dedup as before
    assert app.test_client().delete(f"/images/{first}").status_code == 204


def test_the_service_confines_each_operation_to_the_tenant_given(service: Service) -> None:
    data = images.jpeg((320, 240))
    mine = service.submit(io.BytesIO(data), "m.jpg", tenant="a").image
    assert mine.tenant == "a"
    assert service.get(mine.id, tenant="a").id == mine.id and service.get(mine.id, tenant=None).id == mine.id
    for other in (
        lambda: service.get(mine.id, tenant="b"),
        lambda: service.thumbnail(mine.id, 256, "jpg", tenant="b"),
        lambda: service.similar(mine.id, 10, 10, tenant="b"),
        lambda: service.delete(mine.id, tenant="b"),
    ):
        with pytest.raises(NotFound):
            other()
    assert [i.id for i in service.page(10, tenant="b")] == [] and [i.id for i in service.page(10, tenant="a")] == [
        mine.id]
    theirs = service.submit(io.BytesIO(data), "t.jpg", tenant="b")
    assert theirs.created and not theirs.duplicate and theirs.image.id != mine.id
    assert service.replay("k", tenant="a") is None
    service.delete(mine.id, tenant="a")
    assert service.page(10, tenant=None)[0].id == theirs.image.id


def test_a_catalog_delete_in_another_tenant_touches_nothing_of_the_image(service: Service) -> None:
    """What goes with an image (its content claim, its renders' rows) stays when another tenant's delete misses."""
    catalog = service.storage.catalog
    record, _ = catalog.claims.add_image(uuid.uuid4().hex, "x.jpg", ExclusiveClaims(sha256="ab" * 32), tenant="a")
    assert catalog.images.delete(record.id, "b") is False
    assert catalog.claims.image_with_content("ab" * 32, "a") == record
    assert catalog.claims.image_with_content("ab" * 32, "b") is None
    assert catalog.images.delete(record.id, "a") is True
    assert catalog.claims.image_with_content("ab" * 32, "a") is None


BEFORE_TENANTS = str(migrations.script().get_revision("c9d14e2a7b63").down_revision)  # (the revision it follows)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_rows_from_before_tenants_are_the_default_tenants(kind: str, request: pytest.FixtureRequest,
                                                        tmp_path: Any) -> None:
    """The revision adding tenants gives existing images, idempotency keys and content claims the default tenant
    (what a deployment without keys reads), and a downgrade keeps them."""
    url = request.getfixturevalue("fresh_postgres_url") if kind == "postgres" else f"sqlite:///{tmp_path}/c.sqlite"
    with create_engine(url).begin() as conn:
        command.upgrade(migrations.config(conn), BEFORE_TENANTS)
        conn.execute(sa.text(
            "INSERT INTO apercu_images (id, filename, status, uploaded_at, enqueued_at, attempts, sha256) "
            "VALUES (:id, 'old.jpg', 'pending', '2026-01-01 10:00:00', '2026-01-01 10:00:00', 0, :sha)"
        ), {"id": MISSING, "sha": "cd" * 32})
        conn.execute(sa.text("INSERT INTO apercu_idempotency_keys (key, image_id, created_at) "
                             "VALUES ('old-key', :id, '2026-01-01 10:00:00')"), {"id": MISSING})
        conn.execute(sa.text("INSERT INTO apercu_contents (sha256, image_id) VALUES (:sha, :id)"),
                     {"id": MISSING, "sha": "cd" * 32})
    catalog = Catalog.from_url(url)
    assert migrate(catalog.engine, upgrade=True) == (BEFORE_TENANTS, migrations.head())
    assert getattr(catalog.images.get(MISSING, DEFAULT_TENANT), "filename", None) == "old.jpg"
    assert catalog.images.get(MISSING, "b") is None
    assert getattr(catalog.claims.image_for_key("old-key", None, DEFAULT_TENANT), "id", None) == MISSING
    assert getattr(catalog.claims.image_with_content("cd" * 32, DEFAULT_TENANT), "id", None) == MISSING
    other, holder = catalog.claims.add_image(uuid.uuid4().hex, "b.jpg", ExclusiveClaims("old-key"), tenant="b")
    assert holder is None and other.id != MISSING

    with catalog.engine.begin() as conn:
        command.downgrade(migrations.config(conn), BEFORE_TENANTS)
        kept = conn.execute(sa.text("SELECT key, image_id FROM apercu_idempotency_keys")).all()
    assert [tuple(row) for row in kept] == [("old-key", MISSING)]  # the default tenant's (b's would collide)
    assert migrate(catalog.engine, upgrade=True) == (BEFORE_TENANTS, migrations.head())
