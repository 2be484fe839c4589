"""API keys with an identity (issue 19, items 1, 3 and 7): the key file's forms, keys kept in the catalog and
managed by `apercu keys`, revocation seen by running webs, scopes per operation, and the operator's endpoints.

The rule (`api.access.Gate`) is tested through the Flask test client and through the real server (`apercu web`:
refusals before the body, a revocation reaching a running process); the CLI runs as the operator runs it, against
the embedded catalog and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import images
import pytest
from conftest import parse_json
from live import Service, free_port
from test_access import ID_LIKE, client_for, error_of, refused_mid_upload, unread_upload, upload

from apercu import cli
from apercu.api import access, caller, contract, create_app
from apercu.api.caller import ANONYMOUS, NOBODY
from apercu.config import SettingError, Settings
from apercu.rendition_urls import accepts, view_urls
from apercu.storage.catalog import keys as catalog_keys

READER, WRITER, ADMIN = "r3ader-key", "wr1ter-key", "adm1n-key"
TOKEN = "scrape-t0ken"
SCOPES = ("read", "write", "delete", "admin")


def keys_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "keys"
    path.write_text(text)
    return str(path)


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def identities(tmp_path: Path) -> str:
    """A key file of every form: named keys (one as its digest), a bare key, comments and blank lines."""
    return keys_file(tmp_path, (
        "# name tenant scopes key\n\n"
        f"front acme read {READER}\n"
        f"  ingest   acme  write,read  sha256:{sha(WRITER).upper()}  \n"
        f"ops default admin {ADMIN}\n"
        "bare-old-key\n"
        f"sha256:{sha('bare-hashed-key')}\n"
    ))


def caller_of(client: Any, path: str = "/images", key: str | None = None) -> caller.Caller:
    """Who the gate remembered for a request (the test client keeps its context until the next request)."""
    with client:
        response = client.get(path, headers={"X-API-Key": key} if key else {})
        assert response.status_code < 400, response.get_data(as_text=True)
        return caller.current()


# -- the key file -----------------------------------------------------------------------------------------------


def test_every_form_of_the_key_file_carries_its_identity(settings: Settings, identities: str) -> None:
    client = client_for(settings, api_keys_file=identities, api_keys="env-key")
    assert caller_of(client, key=READER) == caller.Caller("front", "acme", frozenset({"read"}))
    assert caller_of(client, key=WRITER) == caller.Caller("ingest", "acme", frozenset({"read", "write"}))
    assert caller_of(client, key=ADMIN).admin and caller_of(client, key=ADMIN).tenant == "default"
    old_forms = {"bare-old-key": "keys-file-line-6", "bare-hashed-key": "keys-file-line-7", "env-key": "api-key-1"}
    for key, name in old_forms.items():  # set the old way: admin, in the default tenant
        assert caller_of(client, key=key) == caller.Caller(name, "default", frozenset({"admin"})), key
    for digest_as_key in (f"sha256:{sha(WRITER)}", sha(WRITER)):  # the file's digest is no key
        assert client.get("/images", headers={"X-API-Key": digest_as_key}).status_code == 401


def test_the_gate_remembers_the_caller_on_every_request(settings: Settings, identities: str) -> None:
    assert caller_of(client_for(settings), key=READER) is ANONYMOUS  # no keys: one tenant, every scope
    client = client_for(settings, api_keys_file=identities)
    assert caller_of(client, "/healthz") is NOBODY  # keys, none presented, a public path
    assert caller_of(client, "/healthz", key="wrong") is NOBODY
    assert caller_of(client, "/healthz", key=READER).name == "front"  # a public path still knows a key


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("front acme SECRET-KEY", "line 2 has 3 fields"),
        ("front acme read SECRET-KEY extra", "line 2 has 5 fields"),
        ("front acme SECRET-KEY read", "line 2: the scopes are not"),  # fields out of order: the key is no scope
        ("front acme read,owner SECRET-KEY", "line 2: the scopes are not"),
        ("fr/ont acme read SECRET-KEY", "line 2: the name is not"),
        ("SECRET-KEY acme! read key", "line 2: the tenant is not"),
        ("front acme read sha256:5EC12E7", "line 2: a sha256: key is not 64 hexadecimal digits"),
        ("front acme read SECRET,KEY", "line 2 is not visible ASCII"),
        ("SECRET,KEY", "line 2 is not visible ASCII"),
        ("front acme read other-key\nfront acme write SECRET-KEY", "line 3: the name 'front' is line 2's already"),
        (f"front acme read SECRET-KEY\nback acme admin sha256:{sha('SECRET-KEY')}", "line 3: the key is line 2's"),
    ],
    ids=["3-fields", "5-fields", "out-of-order", "unknown-scope", "bad-name", "bad-tenant", "short-digest",
         "comma-in-key", "comma-in-bare-key", "name-twice", "key-twice"],
)
def test_a_bad_line_stops_the_start_naming_the_line_never_the_key(
    settings: Settings, tmp_path: Path, line: str, complaint: str
) -> None:
    path = keys_file(tmp_path, f"# keys\n{line}\n")
    with pytest.raises(SettingError) as raised:
        create_app(settings.with_overrides(api_keys_file=path))
    assert complaint in str(raised.value)
    message = str(raised.value)
    assert "SECRET" not in message and "5EC12E7" not in message and sha("SECRET-KEY") not in message


# -- scopes -----------------------------------------------------------------------------------------------------

SCOPED = [op for op in contract.OPERATIONS if op.scope is not None and op.path != access.METRICS]


def request_of(op: contract.Operation) -> tuple[str, str]:
    return op.method, op.path.replace("{id}", ID_LIKE).replace("{upload_id}", ID_LIKE)


@pytest.fixture
def scoped_keys(settings: Settings, tmp_path: Path) -> Any:
    """A key per scope (named after it), and one holding every scope but admin."""
    lines = [f"{scope} t1 {scope} key-{scope}" for scope in SCOPES] + ["all t1 read,write,delete key-all"]
    return client_for(settings, api_keys_file=keys_file(tmp_path, "\n".join(lines)))


@pytest.mark.parametrize("op", SCOPED, ids=[op.operation_id for op in SCOPED])
def test_each_operation_needs_its_scope(scoped_keys: Any, op: contract.Operation) -> None:
    method, path = request_of(op)
    for scope in SCOPES:
        response = scoped_keys.open(path, method=method, headers={"X-API-Key": f"key-{scope}"})
        if scope in (op.scope, "admin"):
            assert response.status_code not in (401, 403), (scope, response.get_data(as_text=True))
        elif method == "HEAD":  # (no body to read the code from)
            assert response.status_code == 403 and response.headers["Cache-Control"] == "no-store", scope
        else:
            assert error_of(response) == (403, "insufficient_scope"), scope
            assert f"'{op.scope}' scope" in parse_json(response)["error"]["message"]
            assert response.headers["Cache-Control"] == "no-store"
    response = scoped_keys.open(path, method=method, headers={"X-API-Key": "key-all"})
    assert response.status_code not in (401, 403)


def test_a_key_that_may_not_upload_is_refused_before_the_body(scoped_keys: Any) -> None:
    assert error_of(unread_upload(scoped_keys, **{"X-API-Key": "key-read"})) == (403, "insufficient_scope")
    assert error_of(unread_upload(scoped_keys)) == (401, "unauthorized")  # no key: 401 first, as before


def test_public_paths_and_signed_renditions_need_no_scope(scoped_keys: Any) -> None:
    for path in ("/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert scoped_keys.get(path, headers={"X-API-Key": "key-write"}).status_code in (200, 503), path
    rendition = scoped_keys.get(f"/r/unsafe/w:10/{ID_LIKE}.jpg", headers={"X-API-Key": "key-write"})
    assert error_of(rendition) == (403, "bad_signature")  # the signature's refusal, not a scope's


def test_a_scope_is_the_same_for_every_method_and_path_form(scoped_keys: Any) -> None:
    """HEAD is GET's; unknown paths and methods are no operation's: any valid key gets their 404 / 405."""
    assert scoped_keys.head("/images", headers={"X-API-Key": "key-write"}).status_code == 403
    assert scoped_keys.head("/images", headers={"X-API-Key": "key-read"}).status_code == 200
    assert error_of(scoped_keys.get("/nowhere", headers={"X-API-Key": "key-write"}))[0] == 404
    assert error_of(scoped_keys.put("/images", headers={"X-API-Key": "key-read"}))[0] == 405
    assert error_of(scoped_keys.get("/nowhere"))[0] == 401


def test_the_document_states_each_operations_scope(settings: Settings) -> None:
    document = parse_json(client_for(settings).get("/openapi.json"))
    assert "Forbidden" in document["components"]["responses"]
    for op in contract.OPERATIONS:
        written = document["paths"][op.path][op.method.lower()]
        if op in SCOPED:
            assert written["security"] == [{}, {"ApiKey": [op.scope]}, {"Bearer": [op.scope]}], op.operation_id
            assert written["responses"]["403"] == {"$ref": "#/components/responses/Forbidden"}
            assert f"`{op.scope}` scope" in written["description"]
        elif op.path == "/r/{signature}/{rendition}":
            continue  # (its signature is its credential: test_rendition_route)
        elif access.is_public(op.path, access.PUBLIC_PATHS):
            assert written["security"] == [] and "403" not in written["responses"], op.operation_id
        else:  # any valid key, no scope (tus's discovery): the document's own requirement
            assert "security" not in written and "401" in written["responses"], op.operation_id
            assert "403" not in written["responses"], op.operation_id
    closed = parse_json(client_for(settings, metrics_public=False).get("/openapi.json"))
    assert closed["paths"]["/metrics"]["get"]["security"] == [{}, {"ApiKey": ["admin"]}, {"Bearer": ["admin"]}]


def test_keys_are_compared_in_constant_time_and_the_match_picked_by_index(
    settings: Settings, identities: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(settings, api_keys_file=identities, api_keys="env-key")
    calls: list[bytes] = []
    real = access.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(access.hmac, "compare_digest", counting)
    every = len(access.gate(client.application).keys().entries())
    assert every == 6
    for key, name in ((READER, "front"), ("env-key", "api-key-1"), ("bare-hashed-key", "keys-file-line-7")):
        calls.clear()
        assert caller_of(client, key=key).name == name
        assert len(calls) == every and len(set(calls)) == every  # each key once, whichever matched
    calls.clear()
    assert client.get("/images", headers={"X-API-Key": "wrong"}).status_code == 401
    assert len(calls) == every


# -- the operator's endpoints -----------------------------------------------------------------------------------


def readiness(client: Any, key: str | None = None) -> dict[str, str]:
    response = client.get("/readyz", headers={"X-API-Key": key} if key else {})
    assert response.status_code == 503  # the broker is a closed port
    checks: dict[str, str] = parse_json(response)["checks"]
    return checks


def test_readyz_tells_only_an_admin_what_failed(settings: Settings, identities: str) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # bound and closed again: nothing listens there
    keyed = client_for(settings, broker_url=closed, api_keys_file=identities)
    admin = readiness(keyed, ADMIN)["broker"]
    assert admin.startswith("unavailable (OperationalError: ") and "127.0.0.1" in admin
    for client, key in ((keyed, None), (keyed, READER), (keyed, "wrong"), (client_for(settings, broker_url=closed),
                                                                              ADMIN)):
        reason = readiness(client, key)["broker"]
        assert reason == "unavailable (OperationalError)", (key, reason)  # no keys at all: nobody is told more


@pytest.mark.parametrize("with_keys", [True, False], ids=["keys", "no-keys"])
def test_closed_metrics_need_an_admin_key_or_the_token(settings: Settings, identities: str, with_keys: bool) -> None:
    keyed = {"api_keys_file": identities} if with_keys else {}
    client = client_for(settings, metrics_public=False, metrics_token=TOKEN, **keyed)

    def status(headers: dict[str, str]) -> tuple[int, str]:
        response = client.get("/metrics", headers=headers)
        return (200, "") if response.status_code == 200 else error_of(response)

    assert status({"Authorization": f"Bearer {TOKEN}"}) == (200, "")
    assert status({}) == (401, "unauthorized")
    assert status({"Authorization": "Bearer wrong-token"}) == (401, "unauthorized")
    if with_keys:
        assert status({"X-API-Key": ADMIN}) == (200, "")
        assert status({"X-API-Key": READER}) == (403, "insufficient_scope")
        assert client.get("/images", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401  # metrics only
    assert client_for(settings, **keyed).get("/metrics").status_code == 200  # public by default


def test_a_metrics_token_on_public_metrics_is_refused(settings: Settings) -> None:
    with pytest.raises(SettingError, match="APERCU_METRICS_TOKEN is set but APERCU_METRICS_PUBLIC") as raised:
        settings.with_overrides(metrics_token=TOKEN)
    assert TOKEN not in str(raised.value)


# -- keys in the catalog: `apercu keys` -------------------------------------------------------------------------


def apercu_keys(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`apercu keys ...` as the operator runs it (its `main`, in this process: a CLI process costs seconds on a
    loaded machine, and the webs it must reach are other apps or processes anyway)."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["keys", *args])
    done = subprocess.CompletedProcess(["apercu", "keys", *args], code, out.getvalue(), err.getvalue())
    if check:
        assert done.returncode == 0, done.stderr
    return done


def create_key(env: dict[str, str], name: str, scopes: str, tenant: str = "acme") -> str:
    done = apercu_keys(env, "create", "--name", name, "--tenant", tenant, "--scopes", scopes)
    key = done.stdout.strip()
    assert len(key) >= 40 and "\n" not in key and "only time" in done.stderr
    return key


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The settings' environment of a deployment: the embedded catalog, or a fresh PostgreSQL schema."""
    env = {"APERCU_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgresql":
        env["APERCU_DATABASE_URL"] = request.getfixturevalue("fresh_postgres_url")
    return env


def settings_of(env: dict[str, str], tmp_path: Path) -> Settings:
    return Settings.from_env({**env, "APERCU_QUEUE": f"test-{tmp_path.name[-8:]}"})


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until `condition` held (polled), failing after `timeout`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_keys_create_list_revoke(catalog_env: dict[str, str], tmp_path: Path) -> None:
    reader = create_key(catalog_env, "front", "read")
    writer = create_key(catalog_env, "ingest", "write,read", tenant="default")
    assert apercu_keys(catalog_env, "create", "--name", "front", "--scopes", "read", check=False).returncode == 2
    bad = apercu_keys(catalog_env, "create", "--name", "x", "--scopes", "read,owner", check=False)
    assert bad.returncode == 2 and "scopes" in bad.stderr
    settings = settings_of(catalog_env, tmp_path)
    first, second = client_for(settings), client_for(settings)  # two webs sharing one catalog
    assert caller_of(first, key=reader) == caller.Caller("front", "acme", frozenset({"read"}))
    assert error_of(upload(first, headers={"X-API-Key": reader})) == (403, "insufficient_scope")
    assert upload(second, headers={"X-API-Key": writer}).status_code == 202
    assert first.get("/images").status_code == 401  # catalog keys alone make keys required
    listed = apercu_keys(catalog_env, "list").stdout
    assert listed.split("\n")[0].split() == ["NAME", "TENANT", "SCOPES", "CREATED", "REVOKED"]
    assert [line.split()[:3] for line in listed.splitlines()[1:]] == [["front", "acme", "read"],
                                                                      ["ingest", "default", "read,write"]]
    assert reader not in listed and sha(reader) not in listed
    assert "revoked" in apercu_keys(catalog_env, "revoke", "front").stdout
    for client in (first, second):
        took = wait_until(lambda c=client: c.get("/images", headers={"X-API-Key": reader}).status_code == 401,
                          catalog_keys.RELOAD_EVERY + 3)
        assert took <= catalog_keys.RELOAD_EVERY + 1
    assert first.get("/images", headers={"X-API-Key": writer}).status_code == 200
    front, ingest = apercu_keys(catalog_env, "list").stdout.splitlines()[1:]
    assert front.split()[-1] != "-" and ingest.split()[-1] == "-"  # front's revocation time, none for ingest
    assert apercu_keys(catalog_env, "revoke", "nobody", check=False).returncode == 1


def test_keys_stay_required_once_every_catalog_key_is_revoked(settings: Settings) -> None:
    app = create_app(settings)
    keys = app.extensions["apercu"].storage.catalog.keys
    client = app.test_client()
    assert client.get("/images").status_code == 200 and view_urls(settings, keys, ID_LIKE)
    assert accepts(settings, keys, "unsafe", f"/w:10/{ID_LIKE}.jpg")
    keys.create("gone", "acme", ("read",), sha("gone-key"))
    keys.revoke("gone")
    wait_until(lambda: client.get("/images").status_code == 401, catalog_keys.RELOAD_EVERY + 3)
    assert view_urls(settings, keys, ID_LIKE) == {}  # the same rule: no unsigned URL where keys are required
    assert not accepts(settings, keys, "unsafe", f"/w:10/{ID_LIKE}.jpg")


def test_a_catalog_that_cannot_answer_keeps_the_keys_read_before(settings: Settings) -> None:
    app = create_app(settings)
    catalog = app.extensions["apercu"].storage.catalog
    catalog.keys.create("kept", "acme", ("read",), sha("kept-key"))
    client = app.test_client()
    wait_until(lambda: client.get("/images").status_code == 401, catalog_keys.RELOAD_EVERY + 3)  # read
    assert client.get("/images", headers={"X-API-Key": "kept-key"}).status_code == 200
    catalog.engine.dispose()
    files = [settings.data_dir / f"catalog.sqlite{suffix}" for suffix in ("", "-wal", "-shm")]
    for path in files:  # the catalog's tables gone: the next check fails
        if path.exists():
            path.rename(path.with_name(f"aside-{path.name}"))
    try:
        time.sleep(catalog_keys.RELOAD_EVERY)  # a check is due: it fails, and the key read before still works
        assert caller_of(client, "/healthz", "kept-key").name == "kept"
        assert access.gate(app).keys().match("kept-key") == caller.Caller("kept", "acme", frozenset({"read"}))
    finally:
        catalog.engine.dispose()
        for path in files:
            aside = path.with_name(f"aside-{path.name}")
            if aside.exists():
                aside.replace(path)


# -- a real server ----------------------------------------------------------------------------------------------


@pytest.fixture
def web(tmp_path: Path, identities: str) -> Iterator[Service]:
    svc = Service(tmp_path / "data", {"APERCU_API_KEYS_FILE": identities, "APERCU_MIN_FREE_MB": "0"}).start("web")
    try:
        yield svc
    finally:
        assert svc.stop() == [0], svc.log.read_text()[-3000:]


@pytest.mark.integration
def test_a_running_web_stops_taking_a_revoked_key_within_seconds(web: Service) -> None:
    env = {"APERCU_DATA_DIR": str(web.data_dir)}
    key = create_key(env, "late", "read,write")
    wait_until(lambda: web.get("/images", headers={"X-API-Key": key}).status == 200, catalog_keys.RELOAD_EVERY + 3)
    apercu_keys(env, "revoke", "late")
    took = wait_until(lambda: web.get("/images", headers={"X-API-Key": key}).status == 401,
                      catalog_keys.RELOAD_EVERY + 3)
    assert took <= catalog_keys.RELOAD_EVERY + 1
    assert web.get("/images", headers={"X-API-Key": READER}).status == 200  # the file's keys are untouched


@pytest.mark.integration
def test_the_server_refuses_a_key_without_the_scope_before_the_body(web: Service) -> None:
    status, _headers, code = refused_mid_upload(web, f"X-API-Key: {READER}\r\n")
    assert (status, code) == (403, "insufficient_scope")
    assert web.upload(images.jpeg()).status == 401
    assert web.request("POST", "/images", b"", {"X-API-Key": WRITER, "Content-Type": "text/plain"}).status == 400
