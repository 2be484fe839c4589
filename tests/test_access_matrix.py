"""Access proved as a matrix (issue 19, item 8): every operation of the OpenAPI document, called as each of five
callers, on the embedded catalog (SQLite) and on PostgreSQL, each answer held to what the document declares.

The matrix is generated from `GET /openapi.json`, never from a table of routes: its operations are the document's
paths and methods (not its `webhooks`, which the service sends rather than serves), and the status each caller expects follows from the operation's declarations alone (`expected`):
- `security: []` (a public path): whoever calls, key or none, any tenant, gets the operation's answer;
- otherwise no key is a 401; a key without the scope the `security` requirement names is a 403
  `insufficient_scope` naming it (`admin` holds every scope);
- a request naming an image id (a parameter whose schema is `components.parameters.Id`'s: the path's `{id}`,
  `?similar_to=`) of another tenant is a 404, the very answer of an id that never existed; admin's works;
- anything else works for the caller, in its own tenant (and shows another tenant nothing of the images).
How to call an operation is derived from its parameters and body too (`calls`); one the matrix cannot fill (an
unknown path parameter, a required query parameter, a body other than the multipart upload) fails the test, so a
new route cannot escape the matrix. The special cases, said where they are handled:
- signed renditions (`/r/{signature}/{rendition}`): filled with the signed URL the image's own JSON shows its
  tenant (`views`); public by the document, so it works for every caller: the signature is the grant;
- DELETE (both twins, `/images/{id}` and `/delete/{id}`): each request deletes an image of its own, uploaded for
  it, and the test then checks that the image is gone, or still there when the delete was refused;
- `?wait=` (operations declaring `Wait`): always sent, and a refusal must come at once, also for an image still
  pending (which would otherwise be waited for: a wait would tell another tenant it exists);
- the upload's new image belongs to the caller's tenant (admin reads it to check);
- resumable uploads (tus, `/uploads/`): sent with their protocol's headers and bytes; an upload id (`{upload_id}`)
  names an upload of tenant a, made for each request (finished, but for a PATCH, which finishes it), which another
  tenant's key finds no more than a missing one, as an image.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import images
import pytest
from conftest import parse_json
from test_rendition_route import worker

from apercu.api import access, create_app
from apercu.config import Settings
from apercu.tasks import context_of

Json = dict[str, Any]
CATALOGS = ["sqlite", "postgres"]
# The deployment's settings change the document (what is public, what /metrics asks): the matrix follows it.
DEPLOYMENTS = {"default": {}, "public-thumbnails-closed-metrics": {"public_thumbnails": True, "metrics_public": False}}
CALLERS = ("same tenant", "other tenant", "no key", "lacking scope", "admin")
EVERY = frozenset({"read", "write", "delete"})
MISSING = "0123456789abcdef0123456789abcdef"
WAIT = 20  # seconds a `?wait=` asks for: a refusal must come in well under it
ID_PARAMETER = "#/components/parameters/Id"  # the image id's declaration: its schema marks what names an image
UPLOAD_ID = "upload_id"  # a resumable upload's id: names an upload of a tenant's, as an image id does
TUS_BODY = "application/offset+octet-stream"


@dataclass(frozen=True)
class Key:
    name: str
    tenant: str
    scopes: frozenset[str]
    scheme: str  # the document's security scheme it is sent by (both are exercised)

    def line(self) -> str:
        return f"{self.name} {self.tenant} {','.join(sorted(self.scopes))} key-{self.name}"

    def may(self, scope: str | None) -> bool:
        return scope is None or bool(self.scopes & {scope, "admin"})


SAME, OTHER = Key("app-a", "a", EVERY, "ApiKey"), Key("app-b", "b", EVERY, "Bearer")
ADMIN = Key("ops", "ops", frozenset({"admin"}), "Bearer")
LACKING = (Key("reader-a", "a", frozenset({"read"}), "ApiKey"), Key("writer-a", "a", frozenset({"write", "delete"}),
                                                                    "Bearer"))  # tenant a: only the scope is wrong


@dataclass(frozen=True)
class Op:
    """One operation of the document, with its parameters resolved."""

    method: str
    path: str
    written: Json
    parameters: tuple[Json, ...]
    id_schema: Json

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def public(self) -> bool:
        return self.written.get("security") == []

    @property
    def scope(self) -> str | None:
        """The role its security requirements name (one per operation), None where any key does."""
        roles = {role for requirement in self.written.get("security", []) for need in requirement.values()
                 for role in need}
        assert len(roles) <= 1, f"{self.name} names several scopes: {roles}"
        return next(iter(roles), None)

    def names_image(self, parameter: Json) -> bool:
        return parameter["schema"] == self.id_schema

    def declares(self, status: int) -> bool:
        return str(status) in self.written["responses"]


def operations(document: Json) -> list[Op]:
    parameters = document["components"]["parameters"]
    id_schema = parameters[ID_PARAMETER.rsplit("/", 1)[1]]["schema"]

    def resolved(p: Json) -> Json:
        found: Json = parameters[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
        return found

    return [Op(method, path, written, tuple(resolved(p) for p in written.get("parameters", [])), id_schema)
            for path, methods in document["paths"].items() for method, written in methods.items()]


@dataclass(frozen=True)
class Expected:
    status: int | None  # None: it works, a 2xx the operation declares
    code: str | None = None
    scope: str | None = None


WORKS = Expected(None)


def key_of(caller: str, op: Op) -> Key | None:
    """The key `caller` sends for `op`: 'lacking scope' sends a key of the same tenant without the scope asked."""
    if caller == "lacking scope":
        return next(k for k in LACKING if not k.may(op.scope)) if op.scope else LACKING[0]
    return {"same tenant": SAME, "other tenant": OTHER, "admin": ADMIN}.get(caller)


def expected(op: Op, caller: str, names_image: bool) -> Expected:
    """The rule, from the operation's declarations (see the module docstring), in the gate's order: key, scope,
    then tenant."""
    if op.public:
        return WORKS
    key = key_of(caller, op)
    if key is None:
        return Expected(401, "unauthorized")
    if not key.may(op.scope):
        return Expected(403, "insufficient_scope", op.scope)
    if names_image and key.tenant != SAME.tenant and not key.may("admin"):
        return Expected(404, "not_found")
    return WORKS


def headers_of(key: Key | None, document: Json) -> dict[str, str]:
    """The key as its security scheme in the document says it is sent."""
    if key is None:
        return {}
    scheme = document["components"]["securitySchemes"][key.scheme]
    if scheme["type"] == "apiKey" and scheme["in"] == "header":
        return {scheme["name"]: f"key-{key.name}"}
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer"), scheme
    return {"Authorization": f"Bearer key-{key.name}"}


@dataclass(frozen=True)
class Call:
    """One request of an operation: `path` and `query` with `{target}` where an image id goes, `target` the name of
    the parameter that takes it (None: it names no image)."""

    path: str
    target: str | None
    query: tuple[tuple[str, str], ...] = ()
    upload: bool = False
    tus: bool = False  # a resumable upload's request: its headers, and its bytes for POST and PATCH


class Unknown(AssertionError):
    """An operation the matrix does not know how to call: teach `calls` its parameter or body."""


def calls(op: Op, view: str) -> list[Call]:
    """The requests that exercise `op`: its path filled in, plus one request per optional query parameter that
    names an image id. `view` is the subject's signed rendition URL (special: see the module docstring)."""
    if op.path == "/r/{signature}/{rendition}":
        return [Call(view, None)]
    path, target, query, variants = op.path, None, [], []
    for p in op.parameters:
        if p["in"] == "path" and (op.names_image(p) or p["name"] == UPLOAD_ID):
            path, target = path.replace(f"{{{p['name']}}}", "{target}"), p["name"]
        elif p["in"] == "path" and "enum" in p["schema"]:
            path = path.replace(f"{{{p['name']}}}", str(p["schema"]["enum"][0]))
        elif p["in"] == "query" and p["name"] == "wait":
            query.append(("wait", str(WAIT)))
        elif p["in"] == "query" and op.names_image(p):
            variants.append(p["name"])
        elif p["in"] == "path" or p.get("required"):
            raise Unknown(f"{op.name}: the matrix does not know how to fill the parameter {p['name']!r}")
    tus = any(p["name"] == "Tus-Resumable" for p in op.parameters)
    upload = not tus and _is_upload(op)
    base = Call(path, target, tuple(query), upload, tus)
    return [base, *(Call(path, name, (*query, (name, "{target}")), upload) for name in variants)]


KNOWN_BODIES = {"multipart/form-data", "application/json"}  # an upload's file; an upload by URL's JSON


def _is_upload(op: Op) -> bool:
    """Whether `op` takes a body, which the matrix sends as a multipart upload of a file: that is the one body it
    knows. Another encoding of the same operation (the JSON of an upload by URL) passes the same gate, scope and
    tenant, so the file stands for it; a body of any other kind, or a form that cannot carry a file alone, fails."""
    body = op.written.get("requestBody")
    if body is None:
        return False
    form = body["content"].get("multipart/form-data", {}).get("schema", {})
    alone = [form.get("required"), *(each.get("required") for each in form.get("anyOf", []))]
    if not set(body["content"]) <= KNOWN_BODIES or ["file"] not in alone:
        raise Unknown(f"{op.name}: the matrix does not know how to send this body")
    return True


@pytest.fixture(params=CATALOGS)
def catalog(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=list(DEPLOYMENTS))
def deployment(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(request: pytest.FixtureRequest, catalog: str, deployment: str, tmp_path: Path) -> Any:
    """A deployment with a key file (`app-a`, `app-b`, the lacking keys and `ops`), a URL key (for signed views)
    and a live worker's beat (so that /readyz works), on `catalog`."""
    keys = tmp_path / "keys"
    keys.write_text("".join(f"{k.line()}\n" for k in (SAME, OTHER, ADMIN, *LACKING)))
    settings = Settings(data_dir=tmp_path / "data", queue=f"test-{tmp_path.name[-8:]}", url_key="u" * 32,
                        api_keys_file=str(keys), rendition_wait=WAIT, **DEPLOYMENTS[deployment])
    if catalog == "postgres":
        settings = settings.with_overrides(database_url=request.getfixturevalue("fresh_postgres_url"))
    app = create_app(settings)
    app.extensions["apercu"].storage.catalog.workers.beat("matrix", "127.0.0.1", 1)
    return app


class Matrix:
    """The state the cells share: tenant a's processed subject and pending image, and the document."""

    def __init__(self, app: Any) -> None:
        self.app, self.client = app, app.test_client()
        self.document = parse_json(self.client.get("/openapi.json"))
        self.subject = self.upload(SAME)
        context_of(app.extensions["apercu"].celery).processor.process(self.subject, owner="test")
        self.pending = self.upload(SAME)
        self.view = parse_json(self.get(SAME, f"/images/{self.subject}"))["views"]["tile"]["1x"]
        self.requests = 0
        self.tus_data = images.jpeg((160, 120))

    def upload(self, key: Key | None) -> str:
        response = self.post_file(key)
        assert response.status_code == 202, response.get_data(as_text=True)
        image_id: str = parse_json(response)["id"]
        return image_id

    def post_file(self, key: Key | None, path: str = "/images") -> Any:
        data = {"file": (io.BytesIO(images.jpeg((160, 120))), "m.jpg")}
        return self.client.post(path, data=data, headers=headers_of(key, self.document))

    def get(self, key: Key | None, path: str) -> Any:
        return self.client.get(path, headers=headers_of(key, self.document))

    def send(self, op: Op, call: Call, key: Key | None, image_id: str) -> tuple[Any, float]:
        self.requests += 1
        path = call.path.replace("{target}", image_id)
        query = "&".join(f"{name}={value.replace('{target}', image_id)}" for name, value in call.query)
        url = f"{path}?{query}" if query else path
        started = time.monotonic()
        if call.upload:
            response = self.post_file(key, url)
        elif call.tus:
            response = self.tus(op.method, key, url)
        else:
            response = self.client.open(url, method=op.method.upper(), headers=headers_of(key, self.document))
        return response, time.monotonic() - started

    def tus(self, method: str, key: Key | None, url: str, finished: bool = True) -> Any:
        """A resumable upload's request: its bytes (all of them) for a creation (unless not `finished`) and a PATCH."""
        headers = headers_of(key, self.document) | {"Tus-Resumable": "1.0.0", "Upload-Length": str(len(self.tus_data))}
        if method not in ("post", "patch") or not finished:
            return self.client.open(url, method=method.upper(), headers=headers)
        headers |= {"Content-Type": TUS_BODY, "Upload-Offset": "0"}
        return self.client.open(url, method=method.upper(), data=self.tus_data, headers=headers)

    def targets(self, op: Op, call: Call, refused: bool) -> list[str]:
        """The image ids a call is sent with: the subject; an image of its own for a DELETE (a delete that works
        consumes it); and also the pending image when a refusal must not wait for it."""
        if call.target is None:
            return [""]
        if call.target == UPLOAD_ID:
            made = self.tus("post", SAME, "/uploads/", finished=op.method != "patch")
            assert made.status_code == 201, made.get_data(as_text=True)
            return [made.headers["Location"].rsplit("/", 1)[1]]
        if op.method == "delete":
            return [self.upload(SAME)]
        waits = ("wait", str(WAIT)) in call.query
        return [self.subject, self.pending] if refused and waits else [self.subject]


def check(matrix: Matrix, op: Op, call: Call, caller: str) -> None:
    key = key_of(caller, op)
    want = expected(op, caller, call.target is not None)
    for image_id in matrix.targets(op, call, want.status is not None):
        response, took = matrix.send(op, call, key, image_id)
        where = f"{op.name} {call.target or ''} as {caller} ({image_id or '-'})"
        body = response.get_data()
        assert op.declares(response.status_code), f"{where}: {response.status_code} is not declared"
        if want.status is None:
            assert 200 <= response.status_code < 300, f"{where}: {response.status_code} {body[:300]!r}"
        else:
            assert response.status_code == want.status, f"{where}: {response.status_code} {body[:300]!r}"
            assert op.method == "head" or parse_json(response)["error"]["code"] == want.code, where  # (no body)
            assert took < WAIT / 2, f"{where}: a refusal waited {took:.1f} s"
        if want.status == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer", where
        if want.scope is not None and op.method != "head":
            assert f"'{want.scope}' scope" in parse_json(response)["error"]["message"], where
        if want.status == 404:
            missing, _ = matrix.send(op, call, key, MISSING)
            assert (response.status_code, body) == (missing.status_code, missing.get_data()), where
        if caller == "other tenant":
            assert matrix.subject.encode() not in body and matrix.pending.encode() not in body, where
        aftermath(matrix, op, response, key, image_id, where)


def aftermath(matrix: Matrix, op: Op, response: Any, key: Key | None, image_id: str, where: str) -> None:
    """What a request leaves: a DELETE's image is gone exactly when it worked; an upload's is the caller's."""
    if op.method == "delete" and op.path.startswith("/uploads/"):
        still = matrix.tus("head", SAME, f"/uploads/{image_id}").status_code
        assert still == (404 if response.status_code == 204 else 200), where
    elif op.method == "delete":
        still = matrix.get(SAME, f"/images/{image_id}").status_code
        assert still == (404 if response.status_code == 204 else 200), where
    if response.status_code == 202 and "Location" in response.headers:
        made = parse_json(matrix.get(ADMIN, response.headers["Location"]))
        assert key is not None and made["tenant"] == key.tenant, where
    if op.method == "post" and "Apercu-Image-Id" in response.headers:  # a resumable upload's image
        made = parse_json(matrix.get(ADMIN, f"/images/{response.headers['Apercu-Image-Id']}"))
        assert key is not None and made["tenant"] == key.tenant, where


def test_every_operation_as_every_caller(app: Any, catalog: str, deployment: str, render: Any,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    matrix = Matrix(app)
    ops = operations(matrix.document)
    assert ops and {op.name for op in ops} >= {"POST /images", "GET /images/{id}", "DELETE /images/{id}"}
    cells = 0
    with worker(render, matrix.subject):  # renders the subject's thumbnail variants and renditions on request
        for op in ops:
            for caller in CALLERS:
                for call in calls(op, matrix.view):
                    check(matrix, op, call, caller)
                cells += 1
    runs = len(CATALOGS) * len(DEPLOYMENTS)
    with capsys.disabled():
        print(f"\naccess matrix on {catalog}, {deployment}: {len(ops)} operations x {len(CALLERS)} callers = {cells} cells "
              f"(x {len(CATALOGS)} catalogs x {len(DEPLOYMENTS)} deployments = {cells * runs}), "
              f"{matrix.requests} requests, {time.monotonic() - started:.1f} s")
    assert cells == len(ops) * len(CALLERS)


def test_an_operation_the_matrix_cannot_call_fails_it(settings: Settings) -> None:
    """A new route with a path parameter or a body the matrix has not been taught is a failure, not a skip."""
    document = parse_json(create_app(settings).test_client().get("/openapi.json"))
    tag = {"name": "tag", "in": "path", "required": True, "schema": {"type": "string"}}
    document["paths"]["/images/{id}/tags/{tag}"] = {"put": {
        "parameters": [{"$ref": ID_PARAMETER}, tag], "responses": {}}}
    document["paths"]["/images/{id}/meta"] = {"patch": {
        "parameters": [{"$ref": ID_PARAMETER}], "requestBody": {"content": {"application/json": {}}},
        "responses": {}}}
    unknown = [op for op in operations(document) if op.path.endswith(("{tag}", "/meta"))]
    assert len(unknown) == 2
    for op in unknown:
        with pytest.raises(Unknown, match=re.escape(op.name)):
            calls(op, "/r/x")


def test_keys_are_compared_in_constant_time_over_the_whole_key_set(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """APERCU_API_KEYS, the key file and the catalog's keys together: whichever matches (or none), the candidate
    is compared with every one of them, each once (test_keys covers the settings' keys alone)."""
    keys = tmp_path / "keys"
    keys.write_text(f"{SAME.line()}\nbare-key\n")
    app = create_app(settings.with_overrides(api_keys="env-key", api_keys_file=str(keys)))
    catalog_keys = app.extensions["apercu"].storage.catalog.keys
    catalog_keys.create("made", "c", ("read",), hashlib.sha256(b"catalog-key").hexdigest())
    monkeypatch.setattr("apercu.storage.catalog.keys.RELOAD_EVERY", 0.0)  # reloaded beside the next request
    deadline = time.monotonic() + 10
    while len(access.gate(app).keys().entries()) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)  # (each look starts a reload in the background)
    compared: list[bytes] = []  # the known digest of each comparison
    monkeypatch.setattr(access.hmac, "compare_digest",
                        lambda a, b, real=access.hmac.compare_digest: compared.append(b) or real(a, b))
    client = app.test_client()
    for key, status in (("key-app-a", 200), ("env-key", 200), ("bare-key", 200), ("catalog-key", 200),
                        ("wrong-key", 401)):
        compared.clear()
        assert client.get("/images", headers={"X-API-Key": key}).status_code == status, key
        assert len(compared) == len(set(compared)) == 4, key
    assert len(access.gate(app).keys().entries()) == 4
