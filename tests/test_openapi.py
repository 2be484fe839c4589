"""The OpenAPI document (GET /openapi.json) and the interactive docs (/docs): valid OpenAPI 3.1, generated from
the routes' declarations (it refuses to describe an app whose routes are not all declared), and true of what the
app answers.

Responses of real flows (every metadata block, every error, thumbnails and their variants) are checked against
the document with jsonschema, with its object schemas closed: a field the app sends that the document does not
describe fails here even though the published document stays open to additions. The corpus's metadata is
checked the same way. Then schemathesis runs against a live `apercu serve`, generating requests from the document
and checking every answer against it.
"""

from __future__ import annotations

import copy
import io
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import images
import pytest
from conftest import REQUIRE_SERVICES, corpus_files, require_corpus, unavailable
from jsonschema import Draft202012Validator, FormatChecker
from live import Service
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from PIL import Image, TiffImagePlugin

from apercu import __version__
from apercu.api import create_app
from apercu.api.docs import ASSETS
from apercu.api.openapi import document
from apercu.config import Settings
from apercu.imaging.analyse import ProcessingFailed, analyse
from apercu.tasks import context_of

Json = dict[str, Any]
ID_LIKE = "0123456789abcdef0123456789abcdef"
CHROMIUM = Path("/usr/bin/chromium")


# -- Checking responses against the document ----------------------------------------------------------------------


def closed(doc: Json) -> Json:
    """The document with every object schema that lists its properties closed to any others."""
    doc = copy.deepcopy(doc)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(doc)
    return doc


class Contract:
    """The document as a checker of responses: status documented, media type documented, body valid against the
    (closed) schema, documented headers present when required and valid."""

    def __init__(self, doc: Json) -> None:
        self.doc = closed(doc)

    def resolve(self, node: Json) -> Json:
        while "$ref" in node:
            target: Any = self.doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def validator(self, schema: Json) -> Draft202012Validator:
        return Draft202012Validator({**schema, "components": self.doc["components"]}, format_checker=FormatChecker())

    def validate(self, instance: Any, schema: Json) -> None:
        errors = sorted(self.validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:10])

    def check(self, method: str, path: str, response: Any) -> Any:
        """Check a Flask test-client response to `method path` (the document's path template); returns it."""
        operation = self.doc["paths"][path][method.lower()]
        status = str(response.status_code)
        assert status in operation["responses"], f"{method} {path}: {status} is not documented ({response.data[:300]!r})"
        spec = self.resolve(operation["responses"][status])
        content = spec.get("content", {})
        if content:
            assert response.mimetype in content, f"{method} {path} {status}: {response.mimetype} not documented"
            if response.mimetype == "application/json" and method != "HEAD":  # (a HEAD's answer has no body)
                self.validate(json.loads(response.get_data(as_text=True)), content[response.mimetype]["schema"])
        elif status in ("204", "304"):
            assert not response.data
        for name, header in spec.get("headers", {}).items():
            header = self.resolve(header)
            value = response.headers.get(name)
            if value is None:
                assert not header.get("required"), f"{method} {path} {status}: no {name} header"
                continue
            self.validate(int(value) if header["schema"].get("type") == "integer" else value, header["schema"])
        return response


@pytest.fixture
def contract(app: Any) -> Contract:
    return Contract(app.test_client().get("/openapi.json").get_json())


def upload(client: Any, data: bytes, filename: str = "photo.jpg", **kwargs: Any) -> Any:
    return client.post("/images", data={"file": (io.BytesIO(data), filename)}, **kwargs)


# -- The document itself -----------------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(client: Any, settings: Settings) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    doc = response.get_json()
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert doc["openapi"].startswith("3.1.") and doc["info"]["version"] == __version__
    assert doc["servers"] == [{"url": "/"}]
    assert doc["components"]["parameters"]["Size"]["schema"]["enum"] == list(settings.sizes)
    assert {"ApiKey", "Bearer"} <= set(doc["components"]["securitySchemes"])
    assert {} in doc["security"]  # keys are optional: a deployment without keys conforms too
    # Every error answer is the one Error shape; /readyz's 503 is the readiness report, /readyz/workers' the workers'.
    contract = Contract(doc)
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                body = contract.resolve(response).get("content", {}).get("application/json", {}).get("schema")
                if status >= "400" and path not in ("/readyz", "/readyz/workers"):
                    assert body == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_get_index_lists_the_documents_operations(client: Any) -> None:
    doc = client.get("/openapi.json").get_json()
    listed = [(e["method"], e["path"]) for e in client.get("/").get_json()["endpoints"]]
    assert len(listed) == len(set(listed))
    assert set(listed) == {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    summaries = {(method.upper(), path): op["summary"] for path, item in doc["paths"].items() for method, op in item.items()}
    assert all(e["description"] == summaries[(e["method"], e["path"])] for e in client.get("/").get_json()["endpoints"])


def test_a_route_without_a_declared_operation_has_no_document(tmp_path: Path) -> None:
    """The document is made from the declarations only after checking them against the app's routes: a route added
    by hand (without `api.operation.route`) makes the document fail, rather than leave the route out."""
    app = create_app(Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}"))
    app.add_url_rule("/undeclared", "undeclared", lambda: "")
    with pytest.raises(RuntimeError, match="/undeclared"):
        document(app)


def test_the_document_follows_the_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, thumbnail_size=200, thumbnail_sizes="64,1024")
    size = document(create_app(settings))["components"]["parameters"]["Size"]["schema"]
    assert size["enum"] == [64, 200, 1024] and size["default"] == 200


# -- Real flows against the document -----------------------------------------------------------------------------


def gps_everything_jpeg() -> bytes:
    """A JPEG whose GPS block has every field: altitude below sea level, time, speed, direction, track."""
    exif = images.exif_block(gps=True)
    gps = exif.get_ifd(0x8825)
    rational = TiffImagePlugin.IFDRational
    gps.update({
        5: b"\x01", 6: rational(125, 10), 7: (rational(14, 1), rational(27, 1), rational(724, 100)), 29: "2008:10:23",
        12: "N", 13: rational(12, 1), 16: "M", 17: rational(2705, 10), 14: "T", 15: rational(90, 1),
    })
    return images.encode(images.gradient((64, 48)), "JPEG", exif=exif)


def truncated_jpeg() -> bytes:
    data = images.jpeg((640, 480), gps=True)
    return data[: len(data) // 2]


# name -> (image, the metadata blocks it must show, whether processing succeeds)
FLOWS: dict[str, tuple[Callable[[], bytes], set[str], bool]] = {
    "jpeg-gps-xmp-iptc-icc": (images.jpeg_rich, {"exif", "gps", "xmp", "iptc", "icc", "text", "orientation"}, True),
    "jpeg-gps-every-field": (gps_everything_jpeg, {"exif", "gps"}, True),
    "png-text-icc-exif": (images.png_rich, {"exif", "gps", "xmp", "icc", "text", "dpi"}, True),
    "tiff-multipage": (images.tiff_rich, {"exif", "gps", "xmp", "iptc", "icc"}, True),
    "gif-animated": (images.gif_rich, {"animated", "loop", "duration_ms", "text"}, True),
    "webp-exif-xmp-icc": (images.webp_rich, {"exif", "xmp", "icc"}, True),
    "webp-animated": (images.webp_animated, {"animated", "loop", "duration_ms"}, True),
    "apng": (images.apng, {"animated"}, True),
    "heif": (images.heif, set(), True),
    "avif": (images.FACTORIES["AVIF"], set(), True),
    "png-16bit": (images.png_16bit_grey, set(), True),
    "cmyk-jpeg": (images.FUZZ_SEEDS["jpeg-progressive-cmyk"], set(), True),
    "bmp": (images.FACTORIES["BMP"], {"dpi"}, True),
    "tga": (images.FACTORIES["TGA"], set(), True),
    "jpeg-broken-xmp": (lambda: images.encode(images.gradient((40, 30)), "JPEG", xmp=b"<x:not xml"), {"warnings"}, True),
    "jpeg-truncated": (truncated_jpeg, {"exif", "gps"}, False),
}


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_an_image_through_the_api_conforms(name: str, client: Any, process: Any, contract: Contract) -> None:
    make, blocks, succeeds = FLOWS[name]
    accepted = contract.check("POST", "/images", upload(client, make(), filename=f"{name}.bin"))
    assert accepted.status_code == 202
    image_id = accepted.get_json()["id"]
    pending = contract.check("GET", "/images/{id}", client.get(f"/images/{image_id}"))
    assert pending.get_json()["status"] == "pending"
    contract.check("GET", "/thumbnails/{id}.jpg", client.get(f"/thumbnails/{image_id}.jpg"))  # 409

    process(image_id)
    body = contract.check("GET", "/images/{id}", client.get(f"/images/{image_id}?wait=1")).get_json()
    assert body["status"] == ("success" if succeeds else "failure"), body["error"]
    assert blocks <= set(body["metadata"]), set(body["metadata"])
    if name == "jpeg-gps-every-field":
        assert set(body["metadata"]["gps"]) == set(contract.doc["components"]["schemas"]["Gps"]["properties"])
        assert body["metadata"]["gps"]["altitude"] < 0
    thumbnail = contract.check("GET", "/thumbnails/{id}.jpg", client.get(f"/thumbnails/{image_id}.jpg"))
    assert thumbnail.status_code == (200 if succeeds else 404)
    page = contract.check("GET", "/images", client.get("/images?limit=1")).get_json()
    assert page["items"][0]["id"] == image_id
    same = client.get(f"/images?sha256={body['metadata']['sha256']}")
    assert [item["id"] for item in contract.check("GET", "/images", same).get_json()["items"]] == [image_id]
    similar = contract.check("GET", "/images", client.get(f"/images?similar_to={image_id}&max_distance=0"))
    if succeeds:
        assert similar.get_json()["items"][0] == {**body, "distance": 0}
    else:
        assert similar.status_code == 422  # no perceptual hash without pixels


def test_thumbnails_and_their_variants_conform(client: Any, process: Any, render: Any, contract: Contract) -> None:
    image_id = upload(client, images.jpeg((800, 600), orientation=6, gps=True)).get_json()["id"]
    process(image_id)
    for ext in ("jpg", "webp"):
        path = f"/thumbnails/{{id}}.{ext}"
        not_yet = contract.check("GET", path, client.get(f"/thumbnails/{image_id}.{ext}?size=128"))
        assert not_yet.status_code == 409 and not_yet.headers["Retry-After"]
        render(image_id)
        found = contract.check("GET", path, client.get(f"/thumbnails/{image_id}.{ext}?size=128&wait=5"))
        assert found.status_code == 200 and Image.open(io.BytesIO(found.data)).format == {"jpg": "JPEG"}.get(ext, "WEBP")
        again = client.get(f"/thumbnails/{image_id}.{ext}?size=128", headers={"If-None-Match": found.headers["ETag"]})
        assert contract.check("GET", path, again).status_code == 304
        assert contract.check("GET", path, client.get(f"/thumbnails/{image_id}.{ext}?size=7")).status_code == 400
        assert contract.check("GET", path, client.get(f"/thumbnails/{image_id}.{ext}?wait=x")).status_code == 400
        assert contract.check("GET", path, client.get(f"/thumbnails/{ID_LIKE}.{ext}")).status_code == 404
        assert contract.check("GET", path, client.get(f"/thumbnails/not-an-id.{ext}")).status_code == 404


def test_renditions_conform(tmp_path: Path) -> None:
    """A rendition's answers (signed `unsafe`: no URL key, no API key) and the image JSON's preset URLs; renders
    run where the test says (the worker's code, in this process)."""
    from apercu.tasks import RenditionJob

    settings = Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}", rendition_wait=0.2,
                        presets="card=w:40/h:30/fit:cover")
    app = create_app(settings)
    client, path, processor = app.test_client(), "/r/{signature}/{rendition}", context_of(app.extensions["apercu"].celery).processor
    contract = Contract(client.get("/openapi.json").get_json())
    image_id = upload(client, images.jpeg((400, 300))).get_json()["id"]
    processor.process(image_id, owner="test")
    shown = contract.check("GET", "/images/{id}", client.get(f"/images/{image_id}")).get_json()
    assert shown["renditions"] == {"card": f"/r/unsafe/p:card/{image_id}.auto"}
    url, avif = f"/r/unsafe/w:64/{image_id}.auto", {"Accept": "image/avif"}
    not_yet = contract.check("GET", path, client.get(url, headers=avif))
    assert not_yet.status_code == 503 and not_yet.headers["Retry-After"]
    for name in ("w:64.avif", "fit:cover/h:30/w:40.jpg"):
        processor.render(RenditionJob(image_id, name))
    found = contract.check("GET", path, client.get(url, headers=avif))
    assert found.status_code == 200 and found.mimetype == "image/avif"
    assert contract.check("GET", path, client.get(shown["renditions"]["card"])).status_code == 200
    again = client.get(url, headers={**avif, "If-None-Match": found.headers["ETag"]})
    assert contract.check("GET", path, again).status_code == 304
    for status, refused in (
        (400, f"/r/unsafe/w:0/{image_id}.png"), (403, f"/r/{'A' * 43}/w:64/{image_id}.png"),
        (403, f"/r/unsafe/exp:1/w:64/{image_id}.png"), (404, f"/r/unsafe/w:64/{ID_LIKE}.png"),
    ):
        assert contract.check("GET", path, client.get(refused)).status_code == status


def test_uploads_lists_and_deletes_conform(client: Any, process: Any, contract: Contract) -> None:
    key = {"Idempotency-Key": f"upload-{uuid.uuid4()}"}
    first = contract.check("POST", "/images", upload(client, images.jpeg(), headers=key))
    replayed = contract.check("POST", "/images", upload(client, images.jpeg(), headers=key))
    assert replayed.headers["Idempotent-Replayed"] == "true" and replayed.get_json()["id"] == first.get_json()["id"]
    ids = [first.get_json()["id"]] + [upload(client, images.png_rgba()).get_json()["id"] for _ in range(2)]
    for image_id in ids[:2]:
        process(image_id)

    listed, cursor = [], ""
    while True:
        page = contract.check("GET", "/images", client.get(f"/images?limit=2&cursor={cursor}")).get_json()
        listed += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            assert page["links"] == {}
            break
        assert page["links"]["next"].startswith("/images?")
        cursor = page["next_cursor"]
    assert sorted(listed) == sorted(ids)

    assert contract.check("DELETE", "/images/{id}", client.delete(f"/images/{ids[0]}")).status_code == 204
    assert contract.check("DELETE", "/delete/{id}", client.delete(f"/delete/{ids[1]}")).status_code == 204
    for path in ("/images/{id}", "/delete/{id}"):
        gone = client.delete(path.replace("{id}", ids[0]))
        assert contract.check("DELETE", path, gone).status_code == 404
    assert contract.check("GET", "/images/{id}", client.get(f"/images/{ids[0]}")).status_code == 404


def test_error_answers_conform(client: Any, contract: Contract) -> None:
    def status(method: str, path: str, response: Any) -> int:
        return int(contract.check(method, path, response).status_code)

    assert status("POST", "/images", client.post("/images", data={})) == 400
    assert status("POST", "/images", upload(client, b"")) == 400
    assert status("POST", "/images", upload(client, b"not an image at all")) == 415
    assert status("POST", "/images", upload(client, images.jpeg(), headers={"Idempotency-Key": "é"})) == 400
    assert status("POST", "/images", client.post("/images", data=b"--x\r\nnonsense", content_type="multipart/form-data; boundary=x")) == 400
    digits = "0" * 5000 + "5"  # int() refuses more than 4300 digits
    for query in ("limit=0", "limit=101", "limit=x", "limit=²", "limit=①", f"limit={digits}", "cursor=not-a-cursor",
                  "sha256=abc", f"similar_to={ID_LIKE}&max_distance=65", f"similar_to={ID_LIKE}&max_distance=²"):
        assert status("GET", "/images", client.get(f"/images?{query}")) == 400, query
    assert status("GET", "/images", client.get(f"/images?similar_to={ID_LIKE}")) == 404
    pending = upload(client, images.jpeg()).get_json()["id"]
    assert status("GET", "/images", client.get(f"/images?similar_to={pending}")) == 409
    for query in ("size=²", "size=①", f"size={digits}"):
        assert status("GET", "/thumbnails/{id}.jpg", client.get(f"/thumbnails/{pending}.jpg?{query}")) == 400, query
    assert status("GET", "/images/{id}", client.get(f"/images/{ID_LIKE}?wait=31")) == 400
    assert status("GET", "/images/{id}", client.get(f"/images/{ID_LIKE}")) == 404
    assert status("GET", "/images/{id}", client.get("/images/NOT-AN-ID")) == 404


def test_a_duplicate_upload_conforms(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}", dedup="reuse"))
    client = app.test_client()
    contract = Contract(client.get("/openapi.json").get_json())
    first = contract.check("POST", "/images", upload(client, images.jpeg_rich())).get_json()
    context_of(app.extensions["apercu"].celery).processor.process(first["id"], owner="test")
    again = contract.check("POST", "/images", upload(client, images.jpeg_rich()))
    assert again.status_code == 200 and again.get_json()["duplicate"] is True and again.get_json()["id"] == first["id"]


def test_a_too_large_upload_conforms(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}", max_upload_bytes=1000))
    client = app.test_client()
    contract = Contract(client.get("/openapi.json").get_json())
    assert contract.check("POST", "/images", upload(client, images.jpeg((640, 480)))).status_code == 413


def test_api_keys_backpressure_and_their_answers_conform(tmp_path: Path) -> None:
    """401 where the document says a key is needed (and only there), 503 + Retry-After and 507 for uploads."""
    base = Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}")
    keyed = create_app(base.with_overrides(api_keys="s3cret-key")).test_client()
    doc = keyed.get("/openapi.json").get_json()  # public: the document is no secret
    contract = Contract(doc)
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            url = path.replace("{id}", ID_LIKE).replace("{asset}", "swagger-ui.css")
            answer = keyed.open(url, method=method.upper())
            assert (answer.status_code == 401) == ("401" in operation["responses"]), (method, path, answer.status_code)
            assert ("401" in operation["responses"]) == (operation.get("security") != []), (method, path)
            contract.check(method.upper(), path, answer)
    assert keyed.get("/images", headers={"X-API-Key": "s3cret-key"}).status_code == 200
    assert keyed.get("/images", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
    public_thumbnails = create_app(base.with_overrides(api_keys="k", public_thumbnails=True)).test_client()
    operation = public_thumbnails.get("/openapi.json").get_json()["paths"]["/thumbnails/{id}.jpg"]["get"]
    assert operation["security"] == [] and "401" not in operation["responses"]

    for _ in range(2):
        upload(create_app(base).test_client(), images.jpeg())  # two pending images
    busy = create_app(base.with_overrides(max_pending=1)).test_client()
    refused = contract.check("POST", "/images", upload(busy, images.jpeg()))
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
    full = create_app(base.with_overrides(min_free_mb=2**40)).test_client()
    assert contract.check("POST", "/images", upload(full, images.jpeg())).status_code == 507


def test_service_endpoints_conform(client: Any, contract: Contract) -> None:
    assert contract.check("GET", "/", client.get("/")).mimetype == "application/json"
    assert contract.check("GET", "/", client.get("/", headers={"Accept": "text/html"})).mimetype == "text/html"
    contract.check("GET", "/healthz", client.get("/healthz"))
    contract.check("GET", "/readyz", client.get("/readyz"))  # ready, though no worker runs in this process
    assert contract.check("GET", "/readyz/workers", client.get("/readyz/workers")).status_code == 503  # no worker
    contract.check("GET", "/openapi.json", client.get("/openapi.json"))
    contract.check("GET", "/docs", client.get("/docs"))
    if "/metrics" in contract.doc["paths"] and client.get("/metrics").status_code != 404:
        contract.check("GET", "/metrics", client.get("/metrics"))


def test_presigned_redirects_conform(tmp_path: Path, seaweedfs: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}", s3_presign=600,
                        storage_url=seaweedfs.storage_url(), s3_endpoint_url=seaweedfs.endpoint_url)
    app = create_app(settings)
    client = app.test_client()
    contract = Contract(client.get("/openapi.json").get_json())
    image_id = upload(client, images.jpeg()).get_json()["id"]
    context_of(app.extensions["apercu"].celery).processor.process(image_id, owner="test")
    redirected = contract.check("GET", "/thumbnails/{id}.jpg", client.get(f"/thumbnails/{image_id}.jpg"))
    assert redirected.status_code == 302 and redirected.headers["Location"].startswith("http")
    from apercu.tasks import RenditionJob

    context_of(app.extensions["apercu"].celery).processor.render(RenditionJob(image_id, "w:50.png"))
    rendition = contract.check("GET", "/r/{signature}/{rendition}", client.get(f"/r/unsafe/w:50/{image_id}.png"))
    assert rendition.status_code == 302 and rendition.headers["Location"].startswith("http")
    assert rendition.headers["Cache-Control"] == "public, max-age=300"
    stored = urllib.request.urlopen(rendition.headers["Location"], timeout=10).read()  # noqa: S310 - loopback
    assert Image.open(io.BytesIO(stored)).size[0] == 50


@pytest.mark.corpus
def test_the_metadata_of_every_corpus_file_conforms(tmp_path: Path) -> None:
    """Real cameras' and editors' files: whatever the imaging code reads from them fits the documented shape."""
    require_corpus()
    contract = Contract(document(create_app(Settings(data_dir=tmp_path / "data"))))
    metadata_schema = {"$ref": "#/components/schemas/Metadata"}
    checked = 0
    for path in corpus_files():
        try:
            metadata = analyse(path.read_bytes()).metadata
        except ProcessingFailed as exc:
            metadata = exc.metadata
        try:
            contract.validate(json.loads(json.dumps(metadata)), metadata_schema)
        except AssertionError as exc:
            raise AssertionError(f"{path}: {exc}") from None
        checked += 1
    assert checked > 300


# -- /docs -------------------------------------------------------------------------------------------------------


class References(HTMLParser):
    """Every URL a page loads or points to: src and href attributes, and data-*-url ones."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is not None and (name in ("src", "href") or (name.startswith("data-") and name.endswith("url"))):
                self.urls.append(value)


def test_docs_load_everything_from_the_service_itself(client: Any) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html and "<script>" not in html  # no CDN, no inline script
    parser = References()
    parser.feed(html)
    assert len(parser.urls) >= 5
    loaded = {}
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        response = client.get(url)
        assert response.status_code == 200, url
        loaded[url.split("?")[0]] = response
    assert loaded["/openapi.json"].get_json()["openapi"].startswith("3.1")
    assert b"SwaggerUIBundle" in loaded["/docs/swagger-ui-bundle.js"].data
    assert loaded["/docs/swagger-ui.css"].mimetype == "text/css"
    init = loaded["/docs/apercu-docs.js"].get_data(as_text=True)
    assert "validatorUrl: null" in init  # Swagger UI would otherwise send the document's URL to validator.swagger.io
    assert {url.split("?")[0].removeprefix("/docs/") for url in loaded} - {"/openapi.json"} == set(ASSETS)


def test_docs_assets_are_cached_and_unknown_ones_are_404(client: Any, contract: Contract) -> None:
    for name in ASSETS:
        first = contract.check("GET", "/docs/{asset}", client.get(f"/docs/{name}"))
        assert first.status_code == 200 and "max-age=86400" in first.headers["Cache-Control"]
        again = client.get(f"/docs/{name}", headers={"If-None-Match": first.headers["ETag"]})
        assert contract.check("GET", "/docs/{asset}", again).status_code == 304
    for name in ("index.css", "oauth2-redirect.html", "..%2Fflask_swagger_ui.py", "swagger-ui.js"):
        response = contract.check("GET", "/docs/{asset}", client.get(f"/docs/{name}"))
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


# -- schemathesis against a live service -------------------------------------------------------------------------

LIVE_SEEDS = (images.jpeg_rich, images.png_rich, images.tiff_rich, images.gif_rich, images.webp_rich, gps_everything_jpeg,
              truncated_jpeg)
MAX_EXAMPLES = 30  # per operation and mode: about 600 requests in all, 10 s or so
SEEDED_EXAMPLES = 5  # per seeded image, operation and mode


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`apercu serve` with a few processed images of every kind of metadata, so listings show them all."""
    service = Service(tmp_path_factory.mktemp("openapi") / "data").start("serve")
    try:
        ids = [service.upload(make()).json()["id"] for make in LIVE_SEEDS]
        assert all(service.wait_final(image_id)["status"] in ("success", "failure") for image_id in ids)
        yield service
    finally:
        codes = service.stop()
        assert codes == [0] * len(codes), f"unclean stop {codes}:\n{service.log.read_text()[-3000:]}"


def conformance_checks() -> list[Any]:
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance,
            response_headers_conformance]


REFUSED_URL = "http://127.0.0.1:9/generated.jpg"  # a loopback literal: refused (400) before any lookup or connection


def loopback_only(case: Any) -> None:
    """A generated `url` to upload from would send the worker to resolve a made-up host name: tests talk to
    loopback only, so a string there becomes a loopback address, which the web refuses by its text alone."""
    if isinstance(case.body, dict) and isinstance(case.body.get("url"), str):
        case.body["url"] = REFUSED_URL


def fuzz(operation: Any, mode: Any, base_url: str, max_examples: int, path_parameters: Json | None = None) -> int:
    """Up to `max_examples` generated calls to one operation, each answer checked; returns how many were made."""
    from hypothesis import HealthCheck, given, settings

    checks = conformance_checks()
    made = []

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @settings(max_examples=max_examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def call(case: Any) -> None:
        made.append(case)
        loopback_only(case)
        case.call_and_validate(base_url=base_url, checks=checks, timeout=60)

    call()
    return len(made)


@pytest.mark.integration
def test_the_live_service_conforms_to_its_document(live: Service) -> None:
    """Schemathesis generates requests to every operation from the document, valid ones and (for operations that
    take parameters or a body) invalid ones, and checks each answer: no server error; status, media type,
    headers and body as documented. Random ids find no image, so the GET operations on an image run once more
    with the id of each seeded image (processed, or failed) and every other parameter generated.

    It runs through schemathesis's Python API (`APIOperation.as_strategy` under Hypothesis' `given`) rather than
    `schemathesis.pytest.from_fixture`, whose test wrapper reads pytest's private `Node._nodeid`, which pytest 9
    no longer has (AttributeError before any case runs)."""
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.core.result import Ok

    base_url = f"http://127.0.0.1:{live.port}"
    # A resumable upload's bytes (tus): raw bytes, as schemathesis sends application/octet-stream.
    schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    seeded = [item["id"] for item in live.get("/images?limit=100").json()["items"]]
    cases: dict[str, int] = {}
    failures: list[str] = []
    started = time.monotonic()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the document has no operation schemathesis cannot read
        operation = result.ok()
        takes_input = bool(list(operation.iter_parameters())) or bool(operation.body)
        runs: list[tuple[str, Any, int, Json | None]] = [("", GenerationMode.POSITIVE, MAX_EXAMPLES, None)]
        if takes_input:
            runs.append(("", GenerationMode.NEGATIVE, MAX_EXAMPLES, None))
        if operation.method.upper() == "GET" and "{id}" in operation.path:
            runs += [(" seeded", mode, SEEDED_EXAMPLES, {"id": image_id})
                     for image_id in seeded for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
        for what, mode, examples, path_parameters in runs:
            label = f"{operation.label} ({mode.value}{what})"
            try:
                made = fuzz(operation, mode, base_url, examples, path_parameters)
                cases[label] = cases.get(label, 0) + made
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - schemathesis raises a FailureGroup
                failures.append(f"{label}, id={(path_parameters or {}).get('id')}:\n{exc}")
    elapsed = time.monotonic() - started
    print(f"\nschemathesis: {sum(cases.values())} cases in {elapsed:.1f} s:", json.dumps(cases, indent=1))
    assert not failures, "\n\n".join(failures)
    tested = {label.split(" (")[0] for label in cases}
    # Schemathesis leaves out the operation that serves the document itself; the tests above check that one.
    endpoints = live.get("/").json()["endpoints"]
    assert tested == {f"{e['method']} {e['path']}" for e in endpoints} - {"GET /openapi.json"}
    assert len(seeded) >= len(LIVE_SEEDS)


@pytest.mark.integration
def test_the_live_service_answers_processed_images_as_documented(live: Service) -> None:
    """The seeded images as the live service answers them (what schemathesis cannot find from random ids)."""
    contract = Contract(live.get("/openapi.json").json())
    started = time.monotonic()
    page = live.get("/images?limit=100")
    assert page.status == 200
    items = page.json()["items"]
    assert len(items) >= len(LIVE_SEEDS)
    contract.validate(page.json(), {"$ref": "#/components/schemas/ImagePage"})
    for item in items:
        one = live.get(f"/images/{item['id']}")
        assert one.status == 200
        contract.validate(one.json(), {"$ref": "#/components/schemas/Image"})
    assert time.monotonic() - started < 30


@pytest.mark.integration
def test_swagger_ui_renders_every_operation_from_the_service_alone(live: Service) -> None:
    """In a real browser, under the page's Content-Security-Policy: Swagger UI renders the document (one block per
    operation and webhook, no error), runs a request, and every request the page makes goes to the service itself."""
    if not CHROMIUM.is_file():
        unavailable(f"Chromium not found at {CHROMIUM}", REQUIRE_SERVICES)
    from playwright.sync_api import sync_playwright

    origin = f"http://127.0.0.1:{live.port}"
    requested: list[str] = []
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requested.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{origin}/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            page.wait_for_load_state("networkidle")
            webhooks = len(live.get("/openapi.json").json()["webhooks"])  # rendered as operations too
            assert page.locator(".opblock").count() == len(live.get("/").json()["endpoints"]) + webhooks
            assert "OAS 3.1" in page.locator(".info").inner_text()
            assert page.locator(".errors-wrapper").count() == 0
            # "Try it out" reaches the service through the document's relative server URL.
            page.locator("#operations-service-healthz .opblock-summary").click()
            page.locator("#operations-service-healthz .try-out__btn").click()
            page.locator("#operations-service-healthz .execute").click()
            answered = page.locator("#operations-service-healthz .live-responses-table tbody .response-col_status")
            answered.wait_for()
            assert answered.inner_text().strip() == "200"
        finally:
            browser.close()
    assert not problems  # a Content-Security-Policy violation would be one
    assert requested and all(url.startswith(f"{origin}/") for url in requested), requested
    assert f"{origin}/openapi.json" in requested
