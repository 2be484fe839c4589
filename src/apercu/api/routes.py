"""The published routes: each view is bound to its operation (`api.contract`: the path, inputs and answers, a
contract with existing clients: change none of them) and reads its inputs through their declarations."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, get_args
from urllib.parse import quote

from flask import Blueprint, Response, current_app, jsonify, redirect, request
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response as BaseResponse
from werkzeug.wsgi import wrap_file

from apercu import __version__
from apercu.api import access, caller, contract, outage_breaker, page, uploads
from apercu.api.errors import NO_IMAGE, ApiError
from apercu.api.inputs import (
    CALLBACK_URL,
    CURSOR,
    FILE,
    IDEMPOTENCY_KEY,
    IMAGE_ID,
    LIMIT,
    MAX_DISTANCE,
    RENDITION,
    SHA256,
    SIGNATURE,
    SIMILAR_TO,
    SIZE,
    SOURCE_URL,
    WAIT,
    Cursor,
)
from apercu.api.models import (
    AcceptedJson,
    CallerJson,
    HealthJson,
    ImageJson,
    ImagePageJson,
    IndexJson,
    PageLinksJson,
    ReadinessJson,
    WorkersJson,
)
from apercu.api.openapi import document, endpoints
from apercu.api.operation import Given, route
from apercu.images import ID_PATTERN, Image, image_json
from apercu.imaging.renditions.options import AUTO, BadOption, Rendition, negotiate, parse, split_path
from apercu.imaging.thumbnail import OUTPUTS
from apercu.rendition_urls import accepts
from apercu.service import (
    InvalidCallback,
    InvalidSourceUrl,
    NoThumbnail,
    NotReady,
    Service,
    Submitted,
    ThumbnailFile,
)
from apercu.storage.catalog import WORKER_TIMEOUT
from apercu.storage.outages import classify

bp = Blueprint("api", __name__)

THUMBNAIL_MAX_AGE = 86400
RENDITION_MAX_AGE = 31536000  # a year, the longest HTTP caches honour: an id's renditions never change
RENDERING_RETRY_AFTER = "2"


def _apercu() -> Service:
    service: Service = current_app.extensions["apercu"]
    return service


@route(bp, contract.INDEX)
def index(_given: Given) -> ResponseReturnValue:
    """The service status as JSON for API clients; the web page (api/page.py) for a browser that asks for HTML."""
    if page.wants_html(request):
        return page.html()
    body: IndexJson = {"status": "ok", "message": "Server is up and running", "version": __version__,
                       "endpoints": endpoints(current_app)}
    who = caller.current()
    if caller.presented_key(who):  # (private to its holder, and varying on the key: `api.cache_policy`)
        body["caller"] = _caller_json(who)
    response = jsonify(body)
    response.vary.add("Accept")  # the same URL answers HTML to browsers: caches must keep the two apart
    return response


def _caller_json(who: caller.Caller) -> CallerJson:
    """What `GET /` tells a key's holder of the key: never anything of another key."""
    held: list[caller.Scope] = [scope for scope in get_args(caller.Scope) if who.may(scope)]
    return {"name": who.name, "tenant": who.tenant, "scopes": held}


@route(bp, contract.OPENAPI)
def openapi(_given: Given) -> ResponseReturnValue:
    return jsonify(document(current_app))


@route(bp, contract.UPLOAD)
def upload(given: Given) -> ResponseReturnValue:
    """Store and record an upload, then queue it: 202. With an `Idempotency-Key`, a retry gets the first try's
    image (`Idempotent-Replayed: true`) instead of a second one, for `APERCU_IDEMPOTENCY_TTL` seconds; with
    `APERCU_DEDUP=reuse`, bytes already stored get their image: 200 with `"duplicate": true`."""
    service, tenant = _apercu(), caller.current().tenant  # (the caller's own tenant, admin's too)
    key = given.get(IDEMPOTENCY_KEY)
    submitted = service.replay(key, tenant=tenant) if key else None
    if submitted is None:
        submitted = _submitted(given, service, key, tenant)
    image = image_json(submitted.image, root=request.script_root)
    body: AcceptedJson = {"id": image["id"], "status": image["status"], "links": image["links"]}
    if submitted.duplicate:
        body["duplicate"] = True
    response = jsonify(body)
    response.status_code = 200 if submitted.duplicate else 202
    response.headers["Location"] = image["links"]["self"]
    if not submitted.created and not submitted.duplicate:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _submitted(given: Given, service: Service, key: str | None, tenant: str) -> Submitted:
    """A new upload: the file sent, or by the `url` sent (as a form field or in a JSON body), one or the other."""
    source = given.get(SOURCE_URL)
    try:
        if source is None:
            upload, filename = uploads.checked_file(request, service.settings.max_upload_bytes)
            return service.submit(upload, filename, key, given.get(CALLBACK_URL), tenant=tenant)
        if FILE.name in request.files:
            raise SOURCE_URL.refused("send either a file or a url, not both")
        return service.submit_url(source, key, given.get(CALLBACK_URL), tenant=tenant)
    except InvalidCallback as exc:
        raise CALLBACK_URL.refused(str(exc)) from None
    except InvalidSourceUrl as exc:
        raise SOURCE_URL.refused(str(exc)) from None


def _seen() -> str | None:
    """The tenant whose images the caller reads, searches and deletes; None: every tenant's (admin, and a public
    path: thumbnails with APERCU_PUBLIC_THUMBNAILS are for whoever holds their URL, key or none, as for <img> tags
    that cannot send one; a caller's tenant there would hide every image but the default tenant's)."""
    if access.is_public(request.path, access.gate(current_app).public):
        return None
    return caller.current().tenant_filter


def _shown(image: Image) -> ImageJson:
    """An image's JSON as this caller sees it: with its tenant for an admin key (not for a deployment without
    keys, whose one tenant its clients need not be told of)."""
    who = caller.current()
    return image_json(image, with_tenant=who.admin and caller.presented_key(who), root=request.script_root)


@route(bp, contract.GET)
def get_image(given: Given) -> ResponseReturnValue:
    return jsonify(_shown(_apercu().get(given[IMAGE_ID], given[WAIT], tenant=_seen())))


@route(bp, contract.LIST)
def list_images(given: Given) -> ResponseReturnValue:
    """Newest first with cursor pagination; or the images with one SHA-256 (?sha256=), or those that look like
    one image (?similar_to=<id>&max_distance=N, nearest first, each with its `distance` in bits): one page, of the
    caller's tenant."""
    limit, tenant = given[LIMIT], _seen()
    if SHA256 in given:
        return _page([_shown(r) for r in _apercu().with_sha256(given[SHA256], limit, tenant=tenant)])
    if SIMILAR_TO in given:
        near = _apercu().similar(given[SIMILAR_TO], given[MAX_DISTANCE], limit, tenant=tenant)
        return _page([_shown(r) | {"distance": d} for r, d in near])
    found = _apercu().page(limit + 1, given.get(CURSOR), tenant=tenant)
    items, more = found[:limit], len(found) > limit
    next_cursor = Cursor.encode(items[-1].uploaded_at, items[-1].id) if more else None
    next_url = f"{request.script_root}/images?limit={limit}&cursor={next_cursor}"
    return _page([_shown(r) for r in items], next_cursor, next_url)


def _page(items: list[ImageJson], next_cursor: str | None = None, next_url: str = "") -> ResponseReturnValue:
    links: PageLinksJson = {"next": next_url} if next_cursor else {}
    body: ImagePageJson = {"items": items, "next_cursor": next_cursor, "links": links}
    return jsonify(body)


@route(bp, *contract.THUMBNAILS)
def thumbnail(given: Given, ext: str) -> ResponseReturnValue:
    """The stored JPEG, or another size (?size=N) or format (.webp): rendered by a worker on first request and
    kept; meanwhile 409 with Retry-After, or the answer once it is there with ?wait=N."""
    size = given[SIZE]
    service = _apercu()
    found = service.thumbnail(given[IMAGE_ID], size, ext, given[WAIT], tenant=_seen())
    return _file_response(service, found, OUTPUTS[ext][1], THUMBNAIL_MAX_AGE)


def _file_response(service: Service, found: ThumbnailFile, mimetype: str, max_age: int) -> BaseResponse:
    """A kept file as an answer: 304 for its ETag, a redirect to the store (`APERCU_S3_PRESIGN`), or its bytes;
    public, cached for `max_age` (a redirect for half its URL's life: a cached one must not outlive it); private
    when a key was needed (`api.cache_policy`, for every answer)."""
    response: BaseResponse
    if found.etag in request.if_none_match:
        response = Response(status=304)
    elif url := service.thumbnail_url(found):
        response = redirect(url, 302)
        max_age = service.settings.s3_presign // 2
    else:
        body = service.open_thumbnail(found)
        response = Response(wrap_file(request.environ, body), mimetype=mimetype, direct_passthrough=True)
        response.content_length = found.size
    response.set_etag(found.etag)
    response.cache_control.public = True
    response.cache_control.max_age = max_age
    return response


@route(bp, contract.RENDITION)
def rendition(given: Given) -> ResponseReturnValue:
    """A rendition by its signed URL: checked (signature, options, expiry, output size) before anything is
    looked up or rendered; rendered on first request, the request waiting for it (`Service.rendition`)."""
    service = _apercu()
    path = "/" + given[RENDITION]
    if not accepts(service.settings, service.storage.catalog.keys, given[SIGNATURE], path):
        raise SIGNATURE.refused()
    image_id, wanted = _wanted(path, service)
    try:
        found, filename = service.rendition(image_id, wanted)
    except BadOption as exc:
        raise RENDITION.refused(str(exc)) from None
    except NoThumbnail as exc:
        raise ApiError(404, f"no rendition: {exc}", "no_rendition") from None
    except NotReady as exc:
        message = f"the rendition is not ready yet (status: {exc.status}): ask again in a moment"
        raise ApiError(503, message, "not_ready", [("Retry-After", RENDERING_RETRY_AFTER)]) from None
    response = _file_response(service, found, wanted.media_type, RENDITION_MAX_AGE)
    if response.status_code != 302:
        response.cache_control.immutable = True
    if given[RENDITION].endswith(f".{AUTO}"):
        response.vary.add("Accept")
    response.headers["Content-Disposition"] = _inline(filename or image_id, wanted.ext)
    return response


def _wanted(path: str, service: Service) -> tuple[str, Rendition]:
    """The image id and the rendition a URL's (signed) path asks for, `auto` resolved by `Accept`."""
    settings = service.settings
    try:
        segments, image_id, ext = split_path(path)
        wanted = parse(segments, ext, settings.rendition_presets, settings.max_rendition_pixels)
    except BadOption as exc:
        raise RENDITION.refused(str(exc)) from None
    if wanted.expired(time.time()):
        raise ApiError(403, f"this URL expired at {wanted.exp} (unix time)", "url_expired")
    if not re.fullmatch(ID_PATTERN, image_id):
        raise ApiError(404, NO_IMAGE)
    return image_id, wanted.resolved(negotiate(request.headers.get("Accept"))) if wanted.ext == AUTO else wanted


def _inline(name: str, ext: str) -> str:
    """`inline; filename="<stem>.<ext>"`: the original's name without its folder and extension, in ASCII (and
    as UTF-8 too, `filename*`, when it is not ASCII)."""
    stem = re.split(r"[/\\]", name)[-1].rpartition(".")
    filename = f"{stem[0] or stem[2]}.{ext}"
    ascii_name = re.sub(r'[^\x20-\x7e]|["\\%]', "_", filename)
    extended = "" if ascii_name == filename else f"; filename*=UTF-8''{quote(filename)}"
    return f'inline; filename="{ascii_name}"{extended}'


@route(bp, contract.DELETE_LEGACY, contract.DELETE)
def delete(given: Given) -> ResponseReturnValue:
    _apercu().delete(given[IMAGE_ID], tenant=_seen())
    return Response(status=204)


@route(bp, contract.HEALTHZ)
def healthz(_given: Given) -> ResponseReturnValue:
    body: HealthJson = {"status": "ok"}
    return jsonify(body)


@route(bp, contract.READYZ)
def readyz(_given: Given) -> ResponseReturnValue:
    """Whether this process can accept and keep uploads: the catalog, the blob store and the broker answer. Every
    check, always (this is the probe itself: never refused for a dependency known down); a check that passes
    closes that dependency's breaker (`api.outage_breaker.confirmed`). Only an admin key's caller is told what
    failed (`_why_not`). The workers are reported beside the checks, never among them: with none alive an upload
    is still accepted and kept, and waits, so a load balancer must not take every web replica out for it."""
    app = _apercu()
    who = caller.current()
    detailed = who.admin and caller.presented_key(who)
    checks: dict[str, Callable[[], Any]] = {
        "catalog": app.storage.catalog.ping,
        "storage": app.storage.blobs.check,
        "broker": lambda: ping_broker(app.celery),
    }
    results = {}
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            results[name] = _why_not(exc, detailed)
        else:
            results[name] = "ok"
            outage_breaker.confirmed(name)
    ready = all(v == "ok" for v in results.values())
    body: ReadinessJson = {"status": "ok" if ready else "unavailable", "checks": results,
                           "workers": workers_state(app.storage.catalog)}
    response = jsonify(body)
    response.status_code = 200 if ready else 503
    return response


@route(bp, contract.READYZ_WORKERS)
def readyz_workers(_given: Given) -> ResponseReturnValue:
    """The workers alone, for an operator's alert: 503 while none is alive (or the catalog cannot say)."""
    body = workers_state(_apercu().storage.catalog)
    response = jsonify(body)
    response.status_code = 200 if body["status"] == "ok" else 503
    return response


def _why_not(exc: Exception, detailed: bool) -> str:
    """What /readyz says of a failed check: whether the dependency is unavailable or the check failed and the
    exception's class; its text only to an admin (a driver's text can carry addresses, SQL and hints; the web's
    log has what an operator needs)."""
    what = f"{'unavailable' if classify(exc) else 'failed'} ({type(exc).__name__}"
    return f"{what}: {exc})" if detailed else f"{what})"


def workers_state(catalog: Any) -> WorkersJson:
    """How many workers beat lately (each one beats every few seconds): what processes the uploads."""
    try:
        alive = catalog.workers.count_live()
    except Exception as exc:  # noqa: BLE001 - the catalog's outage is /readyz's `catalog` check to tell
        return {"status": "unknown", "alive": None, "message": _why_not(exc, False)}
    if alive == 0:
        return {"status": "none", "alive": 0, "message": f"no worker has reported in the last {WORKER_TIMEOUT:g} s"}
    return {"status": "ok", "alive": alive}


def ping_broker(celery: Any) -> None:
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
