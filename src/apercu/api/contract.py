"""The published contract: every operation of the API, in the order the document and `GET /` list them: what
each says of itself (its summary, its inputs, its answers), which exists nowhere else; and the webhook the service
sends (`WEBHOOKS`). The routes bind their views to these (`api.operation.route`); the document's components come
from the inputs and the response models.

Answers name their bodies by model (a TypedDict of `api.models`), which the document turns into schemas, and the
answers shared by several operations by name (`shared`), which `RESPONSES` defines.
"""

from __future__ import annotations

from typing import Any

from apercu.api import inputs
from apercu.api.docs import ASSET, ASSETS
from apercu.api.errors import PROBLEM, UNAVAILABLE
from apercu.api.models import (
    AcceptedJson,
    ErrorJson,
    HealthJson,
    ImageJson,
    ImagePageJson,
    IndexJson,
    ProblemJson,
    ReadinessJson,
    WorkersJson,
)
from apercu.api.operation import Operation
from apercu.imaging.formats import FORMATS
from apercu.imaging.renditions.options import MEDIA_TYPES
from apercu.imaging.thumbnail import OUTPUTS
from apercu.webhooks.deliveries import ImageEventJson

Json = dict[str, Any]
LABELS = {"WEBP": "WebP"}  # a format's name as people write it, where it is not Pillow's


def shared(name: str) -> Json:
    return {"$ref": f"#/components/responses/{name}"}


def header(name: str) -> Json:
    return {"$ref": f"#/components/headers/{name}"}


def json_body(description: str, body: Any, headers: Json | None = None) -> Json:
    """An answer with a JSON body: `body` is a model (resolved by the document) or a schema."""
    return {"description": description, "content": {"application/json": {"schema": body}},
            **({"headers": headers} if headers else {})}


def error(description: str, headers: Json | None = None) -> Json:
    """An error answer: the JSON error, or problem details for a client whose Accept prefers them."""
    answer = json_body(description, ErrorJson, headers)
    answer["content"][PROBLEM] = {"schema": ProblemJson}
    return answer


def content(description: str, *media_types: str) -> Json:
    return {"description": description, "content": {media: {"schema": {"type": "string"}} for media in media_types}}


HEADERS: Json = {
    "Retry-After": {"description": "Seconds to wait before asking again.", "required": True,
                    "schema": {"type": "integer", "minimum": 0}},
    "ETag": {"description": "The thumbnail's entity tag, for `If-None-Match`.", "required": True,
             "schema": {"type": "string"}},
    "Cache-Control": {"description": "`public, max-age=N` (`private` when the request needed an API key): a day for "
                      "stored bytes, half the presigned URL's life for a redirect. Every error is `no-store`.",
                      "schema": {"type": "string"}},
    "ImageLocation": {"description": "The image's URL (`/images/{id}`).", "required": True,
                      "schema": {"type": "string", "format": "uri-reference"}},
}
RETRY = {"Retry-After": header("Retry-After")}
CACHED = {"ETag": header("ETag"), "Cache-Control": header("Cache-Control")}

RESPONSES: Json = {  # BadRequest lists the codes of every input, and is the document's to make
    "Unauthorized": error("An API key is required (the deployment sets `APERCU_API_KEYS` or `APERCU_API_KEYS_FILE`) "
                          "and the request carried none, or an unknown one.",
                          {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "enum": ["Bearer"]}}}),
    "Forbidden": error("The API key does not hold the scope this operation needs (`insufficient_scope`, naming it): "
                       "see the operation's `security`."),
    "NotFound": error("No image with this id (never was, deleted, or not an id at all)."),
    "NotReady": error("Not processed yet, or this size or format is still being rendered: ask again after "
                      "`Retry-After` seconds, or use `?wait=`.", RETRY),
    "TooLarge": error("The file is larger than the maximum upload size (`APERCU_MAX_UPLOAD_BYTES`); refused from "
                      "`Content-Length` before the body is read when it is declared."),
    "UnsupportedFormat": error("Not an image of a supported format (recognised from its content, never from its "
                               "name or the part's Content-Type)."),
    "Busy": error("Too many images are waiting to be processed (`APERCU_MAX_PENDING`, code `busy`), or a "
                  "dependency is unavailable (see `Unavailable`): retry after `Retry-After` seconds.", RETRY),
    "DiskFull": error("The data disk is nearly full (less than `APERCU_MIN_FREE_MB` free), or full: uploads are "
                      "refused until space is freed."),
    # What the HTTP server itself answers, before any route sees the request: possible on every operation.
    "RequestTimeout": error("The request did not arrive in time (`APERCU_REQUEST_TIMEOUT`)."),
    "UriTooLong": error("The request line is too long."),
    "HeadersTooLarge": error("The request's headers are too large."),
}
SERVER_REFUSALS = {"408": "RequestTimeout", "414": "UriTooLong", "431": "HeadersTooLarge"}
# A dependency's outage: possible on every operation that does not document a 503 of its own.
UNAVAILABLE_CODES = ", ".join(f"`{code}`" for code, _what in UNAVAILABLE.values())
RESPONSES["Unavailable"] = error(
    f"A dependency (the blob store, the catalog database or the task broker) is unavailable (`error.code` says "
    f"which: {UNAVAILABLE_CODES}): no bug, nothing was changed; retry after `Retry-After` seconds.", RETRY)
OUTAGE_REFUSALS = {"503": "Unavailable"}
# A rate limit's answer (`api.rate_limit`), on the operations a configured limit counts (`rate_limit.documented`).
RATE_LIMIT_HEADERS = {
    name: {"description": description, "required": True, "schema": {"type": "integer", "minimum": 0}}
    for name, description in (("RateLimit-Limit", "Requests the limit allows per window."),
                              ("RateLimit-Remaining", "Requests left in this window."),
                              ("RateLimit-Reset", "Seconds until the window ends."))
}
RESPONSES["RateLimited"] = error(
    "More requests than `APERCU_RATE_LIMIT` a second, or uploads than `APERCU_UPLOAD_RATE_LIMIT` a minute, from this "
    "API key (or, without one, this address): code `rate_limited`; retry after `Retry-After` seconds.",
    RETRY | RATE_LIMIT_HEADERS)
BY_ID = {"parameters": {"id": "$response.body#/id"}}
FORMAT_NAMES = f"{', '.join(LABELS.get(f.name, f.name) for f in FORMATS[:-1])} or {FORMATS[-1].name}"

INDEX = Operation(
    "GET", "/", "index", "service", "Service status and this list of endpoints",
    {"200": {"description": "Up.", "content": {"application/json": {"schema": IndexJson},
                                                "text/html": {"schema": {"type": "string"}}}}},
    "JSON for programs; a browser (`Accept: text/html`) gets a web page to upload and browse images. Needs no "
    "key; sent with a valid one, the JSON also says whose it is and what it may do (`caller`), for a client to "
    "offer only that.",
)
UPLOAD = Operation(
    "POST", "/images", "uploadImage", "images",
    "Upload an image (multipart field 'file', or by `url`); 202 with its id, processed asynchronously",
    {
        "202": json_body(
            "Accepted: stored and recorded, queued for processing. With an `Idempotency-Key` seen before, the first "
            "upload's image (whatever its status now) and `Idempotent-Replayed: true`.", AcceptedJson,
            {"Location": header("ImageLocation"),
             "Idempotent-Replayed": {"description": "Present (`true`) when this answers an earlier upload with the "
                                     "same key.", "schema": {"type": "string", "enum": ["true"]}}},
        ) | {"links": {"GetImage": {"operationId": "getImage", **BY_ID},
                       "GetThumbnail": {"operationId": "getThumbnailJpeg", **BY_ID},
                       "DeleteImage": {"operationId": "deleteImage", **BY_ID}}},
        "200": json_body("With `APERCU_DEDUP=reuse`, when these bytes are already stored: the stored image "
                         "(`\"duplicate\": true`), and no new one.", AcceptedJson,
                         {"Location": header("ImageLocation")}),
        "400": shared("BadRequest"), "413": shared("TooLarge"), "415": shared("UnsupportedFormat"),
        "503": shared("Busy"), "507": shared("DiskFull"),
    },
    f"{FORMAT_NAMES}, recognised from its content. The 202 means stored and recorded; metadata and thumbnail "
    "follow (poll `links.self`, or `?wait=`). By `url` (a form field, or a JSON body `{\"url\": \"...\"}`), the "
    "202 means recorded: a worker fetches the bytes, then processes them as an upload's (a URL refused by its text "
    "alone is a 400 `invalid_url`).",
    (inputs.IDEMPOTENCY_KEY, inputs.FILE, inputs.CALLBACK_URL, inputs.SOURCE_URL),
    scope="write", needs=("catalog", "storage"),  # not the broker: the recovery sweep queues what it could not take
)
LIST = Operation(
    "GET", "/images", "listImages", "images",
    "List images, newest first (?limit=, ?cursor=); or find them by content (?sha256=, ?similar_to=)",
    {
        "200": json_body("A page of images.", ImagePageJson),
        "400": shared("BadRequest"),
        "404": error("`similar_to`: no image with this id."),
        "409": shared("NotReady"),
        "422": error("`similar_to`: that image has no perceptual hash to compare with (`no_phash`: its processing "
                     "failed, or it predates perceptual hashes)."),
    },
    inputs=(inputs.LIMIT, inputs.CURSOR, inputs.SHA256, inputs.SIMILAR_TO, inputs.MAX_DISTANCE),
    scope="read", needs=("catalog",),
)
GET = Operation(
    "GET", "/images/{id}", "getImage", "images",
    f"Status and metadata of one image (?wait=N holds until processed, up to {inputs.MAX_WAIT} s)",
    {"200": json_body("The image.", ImageJson), "400": shared("BadRequest"), "404": shared("NotFound")},
    inputs=(inputs.IMAGE_ID, inputs.WAIT),
    scope="read", needs=("catalog",),
)


def kept_file_answers(cached: Json) -> Json:
    """The answers of a kept file besides its bytes: the store's presigned redirect, and 304."""
    return {
        "302": {"description": "With `APERCU_S3_PRESIGN` set: a redirect to a presigned URL of the object store.",
                "headers": {"Location": {"required": True, "schema": {"type": "string", "format": "uri"}}} | cached},
        "304": {"description": "Not modified (`If-None-Match` matched the ETag).", "headers": cached},
    }


def thumbnail(ext: str) -> Operation:
    name, mime = OUTPUTS[ext]
    return Operation(
        "GET", f"/thumbnails/{{id}}.{ext}", f"getThumbnail{name.capitalize()}", "thumbnails",
        f"The {LABELS.get(name, name)} thumbnail once processed (?size=N of the configured sizes, ?wait=N)",
        {
            "200": {"description": "The thumbnail.", "headers": CACHED,
                    "content": {mime: {"schema": {"type": "string", "contentMediaType": mime}}}},
            **kept_file_answers(CACHED),
            "400": shared("BadRequest"),
            "404": error("No image with this id; or no thumbnail: processing failed, or this variant could not be "
                         "rendered (`no_thumbnail`, with the reason)."),
            "409": shared("NotReady"),
        },
        "Upright (EXIF orientation applied), in sRGB, without any metadata. The default size as JPEG is made while "
        "processing; other sizes and WebP are rendered by a worker on first request (meanwhile 409 + Retry-After, "
        "or the answer once it is there with `?wait=`) and kept.",
        (inputs.SIZE, inputs.IMAGE_ID, inputs.WAIT),  # parsed in this order
        {"ext": ext},
        scope="read", needs=("catalog", "storage"),  # not the broker: a render it could not take is asked for again
    )


def delete(path: str, operation_id: str, summary: str) -> Operation:
    return Operation(
        "DELETE", path, operation_id, "images", summary,
        {"204": {"description": "Deleted."}, "404": shared("NotFound")},
        "Removes the record, then the original and every thumbnail and rendition.", (inputs.IMAGE_ID,),
        scope="delete", needs=("catalog", "storage"),
    )


THUMBNAILS = tuple(thumbnail(ext) for ext in OUTPUTS)
IMMUTABLE = {"Cache-Control": {"description": "`public, max-age=31536000, immutable` (an image's renditions never "
                               "change); half the presigned URL's life for a redirect.", "schema": {"type": "string"}},
             "ETag": header("ETag")}
RENDITION = Operation(
    "GET", "/r/{signature}/{rendition}", "getRendition", "renditions",
    "Any size, crop and format of an image, by a signed URL (`/r/<signature>/<options>/<id>.<ext>`)",
    {
        "200": {"description": "The rendition.", "headers": IMMUTABLE | {
                    "Content-Disposition": {"description": "`inline; filename=\"<original name>.<ext>\"`.",
                                            "schema": {"type": "string"}},
                    "Vary": {"description": "`Accept`, for `.auto`.", "schema": {"type": "string"}}},
                "content": {mime: {"schema": {"type": "string", "contentMediaType": mime}}
                            for mime in MEDIA_TYPES.values()}},
        **kept_file_answers(IMMUTABLE),
        "400": shared("BadRequest"),
        "403": error("`bad_signature`: the signature is not this path's (or `unsafe` where it is not accepted); "
                     "`url_expired`: the URL's `exp` has passed."),
        "404": error("No image with this id; or no rendition (`no_rendition`, with the reason): processing failed, "
                     "or this rendition could not be rendered."),
        "503": error("Still processing or rendering after `APERCU_RENDITION_WAIT` seconds (`not_ready`), or a "
                     "dependency is unavailable (see `Unavailable`): retry after `Retry-After` seconds.", RETRY),
    },
    "Renders on first request, in a worker's imaging sandbox, waiting for it (and for the image's processing); "
    "kept in the blob store and streamed afterwards. Options in any order; unknown or out-of-range ones, and an "
    "output of more than `APERCU_MAX_RENDITION_PIXELS`, are a 400 naming the option. Needs no API key: the "
    "signature stands in for one. Upright, in sRGB, without metadata.",
    (inputs.SIGNATURE, inputs.RENDITION),
    needs=("catalog", "storage"),  # not the broker: a render it could not take is asked for again
)
DELETE_LEGACY = delete("/delete/{id}", "deleteImageLegacy", "Delete an image, its thumbnail and its record")
DELETE = delete("/images/{id}", "deleteImage", "Same as DELETE /delete/{id}")
HEALTHZ = Operation("GET", "/healthz", "healthz", "service", "Liveness: 200 while the process runs",
                    {"200": json_body("Alive.", HealthJson)})
READYZ = Operation(
    "GET", "/readyz", "readyz", "service", "Readiness: 200 when this process can accept and keep uploads (catalog, "
    "storage and broker answer)", {"200": json_body("Ready: every check is `ok`.", ReadinessJson),
                                   "503": json_body("Not ready: the failing checks say why.", ReadinessJson)},
    "A failed check says `unavailable` or `failed`; with an `admin` key, also the error (which may name hosts). "
    "Whether a worker is alive is reported (`workers`) but does not make this process unready: uploads are "
    "accepted and kept while no worker runs, and wait for one (alert on `GET /readyz/workers` or "
    "`apercu_workers_alive`).",
)
READYZ_WORKERS = Operation(
    "GET", "/readyz/workers", "readyzWorkers", "service", "Workers: 200 while at least one worker is alive",
    {"200": json_body("At least one worker beat lately.", WorkersJson),
     "503": json_body("No worker beat lately, or the catalog could not be asked: `status` says which.", WorkersJson)},
    "For an operator's alert, not a load balancer's probe: uploads are still accepted while it is 503.",
)
METRICS = Operation(
    "GET", "/metrics", "metrics", "service", "Prometheus metrics (text exposition format)",
    {"200": content("The metrics.", "text/plain")},
    "Open to anyone by default. With `APERCU_METRICS_PUBLIC=false`, it needs an `admin` key or "
    "`APERCU_METRICS_TOKEN` (a scraper's `Authorization: Bearer <token>`).",
    scope="admin",  # only asked with APERCU_METRICS_PUBLIC=false: public otherwise
)
OPENAPI = Operation(
    "GET", "/openapi.json", "openapi", "docs", "This API as an OpenAPI 3.1 document",
    {"200": json_body("This document.", {"type": "object", "required": ["openapi", "info", "paths"]})},
)
DOCS = Operation("GET", "/docs", "docs", "docs", "Interactive API documentation (Swagger UI, served locally)",
                 {"200": content("The page.", "text/html")})
DOCS_ASSET = Operation(
    "GET", "/docs/{asset}", "docsAsset", "docs", "The documentation page's scripts, stylesheet and icons",
    {"200": content("The file.", *sorted(set(ASSETS.values()))), "304": {"description": "Not modified."},
     "404": error("No such asset.")},
    inputs=(ASSET,),
)

# Resumable uploads (tus 1.0.0 at /uploads/, `api.tus`): every answer carries `Tus-Resumable: 1.0.0`.
TUS_HEADERS: Json = {
    "Upload-Offset": {"description": "The bytes received so far: where the next PATCH goes.", "required": True,
                      "schema": {"type": "integer", "minimum": 0}},
    "Upload-Expires": {"description": "When an unfinished upload is removed (`APERCU_UPLOAD_EXPIRY` after its "
                       "creation), as an HTTP date.", "schema": {"type": "string"}},
    "Apercu-Image-Id": {"description": "Once the last byte arrived: the image the upload became.",
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}},
    "Link": {"description": "Once the last byte arrived: `</images/<id>>; rel=\"image\"`.",
             "schema": {"type": "string"}},
}
PROGRESS = {name: header(name) for name in ("Upload-Offset", "Upload-Expires", "Apercu-Image-Id", "Link")}
HEADERS.update(TUS_HEADERS)
OFFSET_BODY: Json = {"required": False, "content": {"application/offset+octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}
UPLOAD_NOT_FOUND = error("No upload with this id (never was, terminated, removed by the sweep, or another tenant's).")
UPLOAD_GONE = error("The upload expired unfinished (`upload_expired`); the sweep removes it.")
CHECKSUM = {"460": error("The bytes do not match `Upload-Checksum` (`checksum_mismatch`): nothing was appended.")}
LAST_BYTE = {"413": shared("TooLarge"), "415": shared("UnsupportedFormat")}
TUS_OPTIONS = Operation(
    "OPTIONS", "/uploads/", "tusOptions", "images", "Resumable uploads (tus 1.0.0): the protocol's versions, "
    "extensions and size limit", {"204": {"description": "`Tus-Version`, `Tus-Extension`, `Tus-Max-Size`, "
                                          "`Tus-Checksum-Algorithm`."}},
    "tus's discovery request; see https://tus.io/protocols/resumable-upload.",
)
TUS_CREATE = Operation(
    "POST", "/uploads/", "tusCreate", "images", "Create a resumable upload (tus creation, creation-with-upload)",
    {"201": {"description": "Created: its URL in `Location`; with a body (creation-with-upload), its bytes "
             "appended as by a PATCH.", "headers": {"Location": {"required": True, "schema": {"type": "string"}}}
             | PROGRESS},
     "400": shared("BadRequest"), **LAST_BYTE, "412": error("`Tus-Resumable` is not 1.0.0."),
     "429": error("This key (or address, without keys) holds `APERCU_MAX_OPEN_UPLOADS` unfinished uploads "
                  "(`too_many_uploads`), or a rate limit (see `RateLimited`).", RETRY), **CHECKSUM,
     "503": shared("Busy"), "507": shared("DiskFull")},
    "The image is made when the last byte arrives, exactly as `POST /images` makes it (sniffed, deduplicated, "
    "idempotent with `Idempotency-Key`, processed); `Upload-Metadata`'s `filename` is its file name.",
    (inputs.TUS_RESUMABLE, inputs.UPLOAD_LENGTH, inputs.UPLOAD_METADATA, inputs.IDEMPOTENCY_KEY,
     inputs.UPLOAD_CHECKSUM), scope="write", needs=("catalog", "storage"), body=OFFSET_BODY,
)
TUS_HEAD = Operation(
    "HEAD", "/uploads/{upload_id}", "tusHead", "images", "Where a resumable upload stands (tus core)",
    {"200": {"description": "`Upload-Offset` (where to resume), `Upload-Length`, `Upload-Metadata`; once "
             "finished, `Apercu-Image-Id` and `Link`.", "headers": PROGRESS},
     "400": shared("BadRequest"), "404": UPLOAD_NOT_FOUND, "410": UPLOAD_GONE, **LAST_BYTE,
     "412": error("`Tus-Resumable` is not 1.0.0.")},
    inputs=(inputs.UPLOAD_ID, inputs.TUS_RESUMABLE), scope="write", needs=("catalog", "storage"),
)
TUS_PATCH = Operation(
    "PATCH", "/uploads/{upload_id}", "tusPatch", "images", "Append bytes to a resumable upload (tus core, checksum)",
    {"204": {"description": "Appended: the new `Upload-Offset`; the request that brings the last byte makes the "
             "image (`Apercu-Image-Id`, `Link`).", "headers": PROGRESS},
     "400": shared("BadRequest"), "404": UPLOAD_NOT_FOUND,
     "409": error("`Upload-Offset` is not the upload's, or another request is writing to it "
                  "(`offset_conflict`): ask HEAD where to resume."),
     "410": UPLOAD_GONE, **LAST_BYTE, "412": error("`Tus-Resumable` is not 1.0.0."), **CHECKSUM},
    "The body is `application/offset+octet-stream` (anything else is a 415). Bytes beyond the upload's length are "
    "a 413, and nothing is appended. The last byte's answer is the image's: a 415 when the bytes are no image.",
    (inputs.UPLOAD_ID, inputs.TUS_RESUMABLE, inputs.UPLOAD_OFFSET, inputs.UPLOAD_CHECKSUM),
    scope="write", needs=("catalog", "storage"), body=OFFSET_BODY,
)
TUS_DELETE = Operation(
    "DELETE", "/uploads/{upload_id}", "tusTerminate", "images", "Terminate a resumable upload (tus termination)",
    {"204": {"description": "Removed with its bytes (an image it made stays)."}, "404": UPLOAD_NOT_FOUND,
     "412": error("`Tus-Resumable` is not 1.0.0.")},
    inputs=(inputs.UPLOAD_ID, inputs.TUS_RESUMABLE), scope="write", needs=("catalog", "storage"),
)

OPERATIONS = (INDEX, UPLOAD, LIST, GET, *THUMBNAILS, RENDITION, DELETE_LEGACY, DELETE, HEALTHZ, READYZ,
              READYZ_WORKERS, METRICS, OPENAPI, DOCS, DOCS_ASSET, TUS_OPTIONS, TUS_CREATE, TUS_HEAD, TUS_PATCH,
              TUS_DELETE)


def webhook_header(name: str, description: str, schema: Json) -> Json:
    return {"name": name, "in": "header", "required": True, "description": description, "schema": schema}


# What the service sends (OpenAPI 3.1 `webhooks`): the completion webhook, signed by the Standard Webhooks scheme.
WEBHOOKS: Json = {"imageSettled": {"post": {
    "operationId": "imageSettled", "tags": ["images"],
    "summary": "Completion webhook: an image reached success or failure",
    "description": "POSTed by the worker to an upload's `callback_url` and to `APERCU_WEBHOOK_URL` (when the "
    "deployment sets `APERCU_WEBHOOK_SECRET`), signed by the Standard Webhooks scheme "
    "(https://www.standardwebhooks.com): verify it with any of its libraries, keyed with the same secret. Retried "
    "with backoff until answered 2xx (`APERCU_WEBHOOK_ATTEMPTS`); redirects are not followed. Also sent, "
    "deprecated: `X-Apercu-Delivery`, `X-Apercu-Timestamp`, `X-Apercu-Signature` (the body alone: no defence "
    "against a replay).",
    "parameters": [
        webhook_header("webhook-id", "The delivery (`webhooks[].id` of the image): the same on every attempt, to "
                       "drop repeats by.", {"type": "string", "pattern": "^[0-9a-f]{32}$"}),
        webhook_header("webhook-timestamp", "This attempt's time, Unix seconds: refuse one too far from now.",
                       {"type": "string", "pattern": "^[0-9]+$"}),
        webhook_header("webhook-signature", "`v1,` and the base64 HMAC-SHA256 of `<webhook-id>.<webhook-timestamp>."
                       "<body>`, keyed with `APERCU_WEBHOOK_SECRET` (`whsec_<base64>`: the decoded bytes; plain "
                       "text: its UTF-8 bytes).", {"type": "string", "pattern": "^v1,[A-Za-z0-9+/]{43}=$"}),
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": ImageEventJson}}},
    "responses": {"2XX": {"description": "Taken. Any other answer, or none within 10 s, is a failed attempt."}},
    "security": [],
}}}
