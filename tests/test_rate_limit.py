"""Rate limits (`api.rate_limit`, `storage.rate_counts`) through the Flask test client, counted in a real store:
the SQLite catalog of the data directory, a PostgreSQL schema, the Redis server. Limiters' clocks stand still
in these tests (`frozen`), so that a count never straddles a window; moving the clock on is a window passing."""

from __future__ import annotations

import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import images
import pytest
import redis
from conftest import parse_json
from live import Service
from own_servers import blackhole
from test_access import refused_mid_upload

from apercu.api import access, create_app, rate_limit
from apercu.config import Settings

KEY, OTHER_KEY = "k3y-0ne_A", "second.key~2"
NOW = (time.time() // 3600) * 3600 + 600.25  # a quarter second into a second, ten minutes into an hour


def app_for(settings: Settings, **overrides: Any) -> Any:
    app = create_app(settings.with_overrides(**overrides))
    app.config["TESTING"] = True
    frozen(app, NOW)
    return app


def frozen(app: Any, now: float) -> None:
    limiter = rate_limit.limiter(app)
    assert limiter is not None
    limiter.clock = lambda: now


def upload(client: Any, **kwargs: Any) -> Any:
    return client.post("/images", data={"file": (io.BytesIO(images.jpeg()), "photo.jpg")}, **kwargs)


def keyed_head(name: str) -> str | None:
    """A head's headers as the gate reads them (case-insensitive): the key alone."""
    return KEY if name.lower() == "x-api-key" else None


def limits_of(response: Any) -> tuple[str, str, str]:
    headers = response.headers
    return headers["RateLimit-Limit"], headers["RateLimit-Remaining"], headers["RateLimit-Reset"]


def assert_limited(response: Any, retry_after: str) -> None:
    assert response.status_code == 429 and parse_json(response)["error"]["code"] == "rate_limited"
    assert response.headers["Retry-After"] == retry_after and response.headers["Cache-Control"] == "no-store"
    assert response.headers["RateLimit-Remaining"] == "0"


def test_requests_per_second_then_the_next_second(settings: Settings) -> None:
    app = app_for(settings, rate_limit=3)
    client = app.test_client()
    answers = [client.get("/images") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [limits_of(a) for a in answers] == [("3", "2", "1"), ("3", "1", "1"), ("3", "0", "1")]
    refused = client.get("/images")
    assert_limited(refused, "1")
    assert limits_of(refused) == ("3", "0", "1")
    for probe in ("/healthz", "/metrics", "/static/css/page.css"):  # never counted: they answer anyway
        answer = client.get(probe)
        assert answer.status_code in (200, 404) and "RateLimit-Limit" not in answer.headers, probe
    frozen(app, NOW + 1)  # the next window
    again = client.get("/images")
    assert again.status_code == 200 and limits_of(again) == ("3", "2", "1")


def test_limits_are_off_by_default(client: Any) -> None:
    answers = [client.get("/images") for _ in range(20)]
    assert all(a.status_code == 200 and "RateLimit-Limit" not in a.headers for a in answers)
    assert rate_limit.limiter(client.application) is None


def test_each_key_has_its_own_count(settings: Settings) -> None:
    client = app_for(settings, rate_limit=2, api_keys=f"{KEY},{OTHER_KEY}").test_client()
    one, other = {"X-API-Key": KEY}, {"Authorization": f"Bearer {OTHER_KEY}"}
    assert [client.get("/images", headers=one).status_code for _ in range(2)] == [200, 200]
    assert_limited(client.get("/images", headers=one), "1")
    assert [client.get("/images", headers=other).status_code for _ in range(2)] == [200, 200]
    assert_limited(client.get("/images", headers=other), "1")
    # the same address, but keys are counted by key: a third key would start at 0; without one, 401, uncounted
    assert [client.get("/images").status_code for _ in range(3)] == [401, 401, 401]


def test_without_keys_each_address_has_its_own_count(settings: Settings) -> None:
    client = app_for(settings, rate_limit=2).test_client()
    here, there = {"REMOTE_ADDR": "192.0.2.1"}, {"REMOTE_ADDR": "192.0.2.2"}
    assert [client.get("/images", environ_base=here).status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/images", environ_base=there).status_code == 200
    # an IPv6 client counts by its /64: another address in it shares the count
    v6a, v6b = {"REMOTE_ADDR": "2001:db8::1"}, {"REMOTE_ADDR": "2001:db8::ffff:2"}
    assert [client.get("/images", environ_base=v6a).status_code for _ in range(2)] == [200, 200]
    assert client.get("/images", environ_base=v6b).status_code == 429


def test_a_key_that_was_not_checked_is_no_identity(settings: Settings) -> None:
    """On a path that needs no key the gate checks none: a made-up key per request must not be a new count."""
    client = app_for(settings, rate_limit=2, api_keys=KEY).test_client()
    codes = [client.get("/openapi.json", headers={"X-API-Key": f"made-up-{n}"}).status_code for n in range(3)]
    assert codes == [200, 200, 429]


def test_uploads_per_minute(settings: Settings) -> None:
    app = app_for(settings, upload_rate_limit=2, api_keys=KEY)
    client, keyed = app.test_client(), {"X-API-Key": KEY}
    first, second = upload(client, headers=keyed), upload(client, headers=keyed)
    assert (first.status_code, second.status_code) == (202, 202)
    # the minute ends in 59.75 s: said as 60
    assert limits_of(first) == ("2", "1", "60") and limits_of(second) == ("2", "0", "60")
    assert_limited(upload(client, headers=keyed), "60")
    listed = client.get("/images", headers=keyed)  # other requests are not uploads, and have no limit here
    assert listed.status_code == 200 and "RateLimit-Limit" not in listed.headers
    # the gate refuses an upload's head before its body is received (what apercu's own server asks)
    head = access.gate(app).check("POST", "/images", keyed_head, "127.0.0.1")
    assert head is not None and (head.status, head.code) == (429, "rate_limited")
    assert ("Retry-After", "60") in head.headers and ("RateLimit-Limit", "2") in head.headers
    frozen(app, NOW + 60)
    assert access.gate(app).check("POST", "/images", keyed_head, "127.0.0.1") is None
    assert upload(client, headers=keyed).status_code == 202
    assert len(parse_json(client.get("/images", headers=keyed))["items"]) == 3  # the refused one was not stored


def test_an_upload_answers_for_the_limit_nearest_to_its_end(settings: Settings) -> None:
    client = app_for(settings, rate_limit=10, upload_rate_limit=2).test_client()
    assert limits_of(upload(client)) == ("2", "1", "60")  # 1 of 2 uploads is nearer its end than 1 of 10 requests
    assert limits_of(client.get("/images")) == ("10", "8", "1")
    assert limits_of(upload(client)) == ("2", "0", "60")
    assert_limited(upload(client), "60")


def shared_by_two_apps(settings: Settings) -> None:
    """Two apps (two web processes, or machines) on one store: one count."""
    first, second = (app_for(settings, rate_limit=3).test_client() for _ in range(2))
    assert [first.get("/images").status_code, second.get("/images").status_code] == [200, 200]
    assert limits_of(first.get("/images")) == ("3", "0", "1")
    assert_limited(second.get("/images"), "1")
    assert_limited(first.get("/images"), "1")


def test_shared_by_two_apps_on_one_sqlite_catalog(settings: Settings) -> None:
    shared_by_two_apps(settings)


def test_shared_by_two_apps_on_postgresql(settings: Settings, fresh_postgres_url: str) -> None:
    shared_by_two_apps(settings.with_overrides(database_url=fresh_postgres_url))


def test_shared_by_two_apps_on_redis(settings: Settings, redis_url: str) -> None:
    shared_by_two_apps(settings.with_overrides(broker_url=redis_url))
    counters = list(redis.Redis.from_url(redis_url).scan_iter(f"apercu:{settings.queue}:rate:*"))
    assert len(counters) == 1  # one counter for the one caller, under this deployment's queue


@pytest.mark.parametrize("store", ["sqlite", "postgresql", "redis"])
def test_concurrent_requests_from_two_apps_never_pass_the_limit(
    settings: Settings, store: str, request: pytest.FixtureRequest
) -> None:
    """The count is one atomic step in every store: 24 requests at once through two apps, 10 allowed, 10 pass."""
    if store == "postgresql":
        settings = settings.with_overrides(database_url=request.getfixturevalue("fresh_postgres_url"))
    elif store == "redis":
        settings = settings.with_overrides(broker_url=request.getfixturevalue("redis_url"))
    apps = [app_for(settings, rate_limit=10) for _ in range(2)]
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda n: apps[n % 2].test_client().get("/images").status_code, range(24)))
    assert sorted(codes) == [200] * 10 + [429] * 14


def test_the_catalog_sweeps_idle_counters(settings: Settings) -> None:
    from apercu.storage.catalog.tables import rate_counts
    from apercu.storage.rate_counts import IDLE, SWEEP_EVERY

    app = app_for(settings, rate_limit=5)
    client = app.test_client()
    assert client.get("/images", environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code == 200
    frozen(app, NOW + IDLE + SWEEP_EVERY + 1)
    assert client.get("/images").status_code == 200
    engine = app.extensions["apercu"].storage.catalog.engine
    with engine.connect() as conn:
        keys = [row.key for row in conn.execute(rate_counts.select())]
    assert keys == ["requests:address:127.0.0.1"]


def test_served_uncounted_while_the_store_is_away(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    app = app_for(settings, rate_limit=1, broker_url="redis://127.0.0.1:9/0")  # nothing listens on port 9
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger=rate_limit.__name__):
        answers = [client.get("/images") for _ in range(3)]
    assert all(a.status_code == 200 and "RateLimit-Limit" not in a.headers for a in answers)
    assert len([r for r in caplog.records if "cannot be reached" in r.message]) == 1  # once per outage
    limiter = rate_limit.limiter(app)
    assert limiter is not None and limiter.away_until == NOW + rate_limit.RETRY_AFTER_FAILURE



@pytest.mark.parametrize("store", ["redis", "postgres"])
def test_served_uncounted_while_the_store_is_down_then_counted_again(
    settings: Settings, store: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """A store of the test's own, killed and started again: meanwhile answers come, uncounted (/openapi.json needs
    no catalog), with one log line each way."""
    server = request.getfixturevalue(f"own_{store}")
    place = "broker_url" if store == "redis" else "database_url"
    app = app_for(settings, rate_limit=2, **{place: server.url})
    client = app.test_client()
    assert limits_of(client.get("/openapi.json")) == ("2", "1", "1")
    server.kill()
    with caplog.at_level(logging.WARNING, logger=rate_limit.__name__):
        answers = [client.get("/openapi.json") for _ in range(3)]
        assert all(a.status_code == 200 and "RateLimit-Limit" not in a.headers for a in answers)
        server.start()
        frozen(app, NOW + rate_limit.RETRY_AFTER_FAILURE)  # the limiter tries the store again, in a new second
        assert limits_of(client.get("/openapi.json")) == ("2", "1", "1")
    messages = [r.message for r in caplog.records]
    assert len([m for m in messages if "cannot be reached" in m]) == 1, messages
    assert len([m for m in messages if "answers again" in m]) == 1, messages


def test_a_store_that_never_answers_costs_one_request_a_fraction_of_a_second(settings: Settings) -> None:
    with blackhole() as port:
        client = app_for(settings, rate_limit=2, broker_url=f"redis://127.0.0.1:{port}/0").test_client()
        started = time.monotonic()
        first = client.get("/openapi.json")
        waited = time.monotonic() - started
        assert first.status_code == 200 and "RateLimit-Limit" not in first.headers
        assert waited < 2.0  # the store's timeout (0.25 s), not a hang
        started = time.monotonic()
        assert client.get("/openapi.json").status_code == 200  # the store is left alone meanwhile
        assert time.monotonic() - started < waited

@pytest.mark.integration
def test_the_server_refuses_an_upload_over_its_limit_before_its_body(tmp_path: Path) -> None:
    """apercu's own server, two web processes on one SQLite catalog: the second upload of a minute is refused
    from its head, whichever process receives it, and not a byte of its 50 MB body is stored."""
    env = {"APERCU_UPLOAD_RATE_LIMIT": "1", "APERCU_MIN_FREE_MB": "0", "APERCU_WEB_WORKERS": "2"}
    svc = Service(tmp_path / "data", env).start("web")
    try:
        deadline = time.monotonic() + 15
        while time.time() % 60 > 45 and time.monotonic() < deadline:  # both uploads within one minute
            time.sleep(0.1)
        first = svc.upload(images.jpeg(), "a.jpg")
        assert first.status == 202 and first.headers["RateLimit-Remaining"] == "0"
        for _ in range(2):  # a new connection each: either web process may take it
            status, headers, code = refused_mid_upload(svc)
            assert (status, code) == (429, "rate_limited")
            assert int(headers["retry-after"]) <= 60 and headers["ratelimit-limit"] == "1"
    finally:
        assert svc.stop() == [0], svc.log.read_text()[-3000:]


def test_the_document_lists_429_where_a_limit_counts_and_the_answers_conform(settings: Settings) -> None:
    from test_openapi import Contract

    limited = {"$ref": "#/components/responses/RateLimited"}  # (a resumable upload's creation has a 429 of its own)
    assert not any(operation["responses"].get("429") == limited for item in create_app(settings).test_client()
                   .get("/openapi.json").get_json()["paths"].values() for operation in item.values())  # no limit
    app = app_for(settings, rate_limit=1, upload_rate_limit=1)
    client = app.test_client()
    contract = Contract(client.get("/openapi.json").get_json())  # the one request of this second
    paths = contract.doc["paths"]
    assert "429" in paths["/images"]["post"]["responses"] and "429" in paths["/images"]["get"]["responses"]
    assert "429" not in paths["/healthz"]["get"]["responses"] and "429" not in paths["/metrics"]["get"]["responses"]
    for method, path, answer in (("GET", "/images", client.get("/images")), ("POST", "/images", upload(client))):
        assert contract.check(method, path, answer).status_code == 429
    only_uploads = app_for(settings, upload_rate_limit=1).test_client().get("/openapi.json").get_json()["paths"]
    assert "429" in only_uploads["/images"]["post"]["responses"] and "429" not in only_uploads["/images"]["get"]["responses"]
