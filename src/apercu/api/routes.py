"""The published routes. Paths are a contract with existing clients: change none of them."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, redirect, request
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response as BaseResponse
from werkzeug.wsgi import wrap_file

from apercu import __version__
from apercu.api import limits, page, uploads
from apercu.api.errors import NO_IMAGE, ApiError
from apercu.api.openapi import ENDPOINTS, document
from apercu.images import Image, image_json
from apercu.imaging.thumbnail import OUTPUTS
from apercu.service import Service
from apercu.storage.catalog import WORKER_TIMEOUT

bp = Blueprint("api", __name__)

ID_PATTERN = re.compile(limits.ID_PATTERN)
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
THUMBNAIL_MAX_AGE = 86400


def _apercu() -> Service:
    service: Service = current_app.extensions["apercu"]
    return service


def _wait_seconds() -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        raise ApiError(400, "wait must be a number of seconds", code="invalid_wait") from None
    if not 0 <= seconds <= limits.MAX_WAIT:
        raise ApiError(400, f"wait must be between 0 and {limits.MAX_WAIT} seconds", code="invalid_wait")
    return seconds


def _checked_id(image_id: str) -> str:
    """404 for what cannot be an id, before anything is looked up."""
    if not ID_PATTERN.match(image_id):
        raise ApiError(404, NO_IMAGE)
    return image_id


@bp.get("/")
def index() -> ResponseReturnValue:
    """The service status as JSON for API clients; the web page (api/page.py) for a browser that asks for HTML."""
    if page.wants_html(request):
        return page.html()
    response = jsonify(
        status="ok",
        message="Server is up and running",
        version=__version__,
        endpoints=[{"method": m, "path": p, "description": d} for m, p, d in ENDPOINTS],
    )
    response.vary.add("Accept")  # the same URL answers HTML to browsers: caches must keep the two apart
    return response


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    return jsonify(document(__version__, _apercu().settings))


@bp.post("/images")
def upload() -> ResponseReturnValue:
    """Store and record an upload, then queue it: 202. With an `Idempotency-Key`, a retry gets the first try's
    image (`Idempotent-Replayed: true`) instead of a second one, for `APERCU_IDEMPOTENCY_TTL` seconds; with
    `APERCU_DEDUP=reuse`, bytes already stored get their image: 200 with `"duplicate": true`."""
    service = _apercu()
    key = uploads.idempotency_key(request)
    submitted = service.replay(key) if key else None
    if submitted is None:
        upload, filename = uploads.checked_file(request, service.settings.max_upload_bytes)
        submitted = service.submit(upload, filename, key, request.form.get("callback_url"))
    body = image_json(submitted.image)
    answer = {k: body[k] for k in ("id", "status", "links")} | ({"duplicate": True} if submitted.duplicate else {})
    response = jsonify(answer)
    response.status_code = 200 if submitted.duplicate else 202
    response.headers["Location"] = body["links"]["self"]
    if not submitted.created and not submitted.duplicate:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/images/<image_id>")
def get_image(image_id: str) -> ResponseReturnValue:
    return jsonify(image_json(_apercu().get(_checked_id(image_id), _wait_seconds())))


@bp.get("/images")
def list_images() -> ResponseReturnValue:
    """Newest first with cursor pagination; or the images with one SHA-256 (?sha256=), or those that look like
    one image (?similar_to=<id>&max_distance=N, nearest first, each with its `distance` in bits): one page."""
    limit = _page_size()
    if "sha256" in request.args:
        found = _apercu().with_sha256(_checked_sha256(request.args["sha256"]), limit)
        return jsonify(items=[image_json(r) for r in found], next_cursor=None, links={})
    if "similar_to" in request.args:
        near = _apercu().similar(_checked_id(request.args["similar_to"]), _max_distance(), limit)
        return jsonify(items=[image_json(r) | {"distance": d} for r, d in near], next_cursor=None, links={})
    after = _decode_cursor(request.args.get("cursor"))
    found = _apercu().page(limit + 1, after)
    items, more = found[:limit], len(found) > limit
    next_cursor = _encode_cursor(items[-1]) if more else None
    links = {"next": f"/images?limit={limit}&cursor={next_cursor}"} if next_cursor else {}
    return jsonify(items=[image_json(r) for r in items], next_cursor=next_cursor, links=links)


def _checked_sha256(raw: str) -> str:
    if not SHA256_PATTERN.fullmatch(raw.lower()):
        raise ApiError(400, "sha256 must be 64 hexadecimal digits", code="invalid_sha256")
    return raw.lower()


def _max_distance() -> int:
    distance = _integer(request.args.get("max_distance", str(limits.DEFAULT_DISTANCE)))
    if distance is None or not 0 <= distance <= 64:
        raise ApiError(400, "max_distance must be an integer from 0 to 64 (bits)", code="invalid_max_distance")
    return distance


def _page_size() -> int:
    limit = _integer(request.args.get("limit", str(limits.DEFAULT_PAGE)))
    if limit is None or not 1 <= limit <= limits.MAX_PAGE:
        raise ApiError(400, f"limit must be an integer from 1 to {limits.MAX_PAGE}", code="invalid_limit")
    return limit


def _integer(raw: str) -> int | None:
    """A query parameter's whole number, or None: ASCII digits only (str.isdigit also takes "²", which int()
    refuses), and few enough of them for int() (which refuses more than 4300 digits)."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


def _encode_cursor(image: Image) -> str:
    raw = f"{image.uploaded_at.isoformat()}|{image.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, image_id = raw.split("|")
        if not ID_PATTERN.match(image_id):
            raise ValueError(image_id)
        return datetime.fromisoformat(stamp), image_id
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ApiError(400, "cursor is not one this server issued", code="invalid_cursor") from None


@bp.get("/thumbnails/<image_id>.jpg", defaults={"ext": "jpg"})
@bp.get("/thumbnails/<image_id>.webp", defaults={"ext": "webp"})
def thumbnail(image_id: str, ext: str) -> ResponseReturnValue:
    """The stored JPEG, or another size (?size=N) or format (.webp): rendered by a worker on first request and
    kept; meanwhile 409 with Retry-After, or the answer once it is there with ?wait=N."""
    size = _thumbnail_size()
    service = _apercu()
    found = service.thumbnail(_checked_id(image_id), size, ext, _wait_seconds())
    max_age = THUMBNAIL_MAX_AGE
    response: BaseResponse
    if found.etag in request.if_none_match:
        response = Response(status=304)
    elif url := service.thumbnail_url(found):
        response = redirect(url, 302)
        max_age = service.settings.s3_presign // 2  # a cached redirect must not outlive the URL it points to
    else:
        body = service.open_thumbnail(found)
        response = Response(wrap_file(request.environ, body), mimetype=OUTPUTS[ext][1], direct_passthrough=True)
        response.content_length = found.size
    response.set_etag(found.etag)
    response.cache_control.public = True
    response.cache_control.max_age = max_age
    return response


def _thumbnail_size() -> int:
    sizes = _apercu().settings.sizes
    size = _integer(request.args.get("size", str(_apercu().settings.thumbnail_size)))
    if size is None or size not in sizes:
        raise ApiError(400, f"size must be one of {', '.join(map(str, sizes))}", code="invalid_size")
    return size


def _delete(image_id: str) -> ResponseReturnValue:
    _apercu().delete(_checked_id(image_id))
    return Response(status=204)


bp.add_url_rule("/delete/<image_id>", "delete_legacy", _delete, methods=["DELETE"])
bp.add_url_rule("/images/<image_id>", "delete_image", _delete, methods=["DELETE"])


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    app = _apercu()
    checks: dict[str, Callable[[], Any]] = {
        "catalog": app.storage.catalog.ping,
        "storage": app.storage.blobs.check,
        "broker": lambda: _ping_broker(app.celery),
        "workers": lambda: _live_workers(app.storage.catalog),
    }
    results = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            results[name] = f"{type(exc).__name__}: {exc}"[:300]
    ready = all(v == "ok" for v in results.values())
    response = jsonify(status="ok" if ready else "unavailable", checks=results)
    response.status_code = 200 if ready else 503
    return response


def _live_workers(catalog: Any) -> None:
    """Uploads are only worth taking while some worker makes progress: each one beats every few seconds."""
    if catalog.workers.count_live() == 0:
        raise RuntimeError(f"no worker has reported in the last {WORKER_TIMEOUT:g} s")


def _ping_broker(celery: Any) -> None:
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
