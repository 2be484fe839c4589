"""The OpenAPI 3.1 document (GET /openapi.json, rendered at /docs), and the endpoint list GET / shows.

One table, OPERATIONS, describes every route: GET / lists its (method, path, summary) as ENDPOINTS and
`document` builds the paths from it, so the two cannot drift apart; tests/test_openapi.py checks that the Flask
routes and the document name the same operations and that real responses (and a schemathesis run against a
live service) conform to the schemas below.

The metadata schemas describe what `apercu.imaging` produces. They are open (no `additionalProperties: false`)
so that a field added later does not break clients generated from this document; the tests check the other way
round, that every field a real image produces is described here.
"""

from __future__ import annotations

import copy
from typing import Any

from apercu.api.access import PUBLIC_PATHS, is_public, public_paths
from apercu.api.docs import ASSETS
from apercu.api.limits import DEFAULT_DISTANCE, DEFAULT_PAGE, ID_PATTERN, MAX_PAGE, MAX_WAIT
from apercu.config import Settings
from apercu.imaging.formats import FORMATS
from apercu.imaging.gps import SPEED_UNITS
from apercu.imaging.icc import INTENTS
from apercu.imaging.iptc import DATES, ENVELOPE_NAMES, NAMES, REPEATABLE

Json = dict[str, Any]


def ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def schema(name: str) -> Json:
    return ref("schemas", name)


def json_body(description: str, body: Json, headers: Json | None = None) -> Json:
    response: Json = {"description": description, "content": {"application/json": {"schema": body}}}
    if headers:
        response["headers"] = headers
    return response


def error(description: str, headers: Json | None = None) -> Json:
    return json_body(description, schema("Error"), headers)


# -- Parameters -------------------------------------------------------------------------------------------------

PARAMETERS: Json = {
    "ImageId": {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "The image's id, as the upload returned it (32 lowercase hex digits); anything else is a 404.",
        "schema": {"type": "string", "pattern": ID_PATTERN},
    },
    "Wait": {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": f"Hold the request up to this many seconds (at most {MAX_WAIT}) until processing (or "
        "the rendering of a thumbnail variant) has ended, instead of answering at once.",
        "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT, "default": 0},
    },
    "Limit": {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": f"Images per page, 1 to {MAX_PAGE}.",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
    },
    "Cursor": {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "Where the page starts: the `next_cursor` of the previous page (opaque). Absent or empty: "
        "the newest images.",
        "schema": {"type": "string"},
    },
    "Sha256": {
        "name": "sha256",
        "in": "query",
        "required": False,
        "description": "Only the images whose original has these bytes (`metadata.sha256`), newest first, one page "
        "(`cursor` does not apply).",
        "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
    },
    "SimilarTo": {
        "name": "similar_to",
        "in": "query",
        "required": False,
        "description": "Only the images that look like this one (perceptual hashes within `max_distance` bits), "
        "nearest first, itself included, each with its `distance`; one page (`cursor` does not apply).",
        "schema": {"type": "string", "pattern": ID_PATTERN},
    },
    "MaxDistance": {
        "name": "max_distance",
        "in": "query",
        "required": False,
        "description": "With `similar_to`: how many of the 64 bits of the perceptual hash may differ.",
        "schema": {"type": "integer", "minimum": 0, "maximum": 64, "default": DEFAULT_DISTANCE},
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Makes the upload safe to retry: a later upload with the same key (within "
        "`APERCU_IDEMPOTENCY_TTL` seconds) gets the first upload's image, with `Idempotent-Replayed: true`, "
        "instead of creating a second one. 1 to 255 printable ASCII characters.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]([ -~]*[!-~])?$"},
    },
}


def size_parameter(settings: Settings | None) -> Json:
    """?size=: the configured sizes as an enum when the settings are known, else any integer."""
    size: Json = {"type": "integer", "minimum": 16, "maximum": 4096}
    if settings is not None:
        size = {"type": "integer", "enum": list(settings.sizes), "default": settings.thumbnail_size}
    return {
        "name": "size",
        "in": "query",
        "required": False,
        "description": "Longest side in pixels: one of the configured sizes (`APERCU_THUMBNAIL_SIZES`, plus "
        "`APERCU_THUMBNAIL_SIZE`, the default). Other sizes than the default are rendered on first request.",
        "schema": size,
    }


# -- Headers and reusable responses -----------------------------------------------------------------------------

HEADERS: Json = {
    "Retry-After": {
        "description": "Seconds to wait before asking again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "ETag": {
        "description": "The thumbnail's entity tag, for `If-None-Match`.",
        "required": True,
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "`public, max-age=N`: a day for stored bytes, half the presigned URL's life for a redirect.",
        "schema": {"type": "string"},
    },
    "ImageLocation": {
        "description": "The image's URL (`/images/{id}`).",
        "required": True,
        "schema": {"type": "string", "format": "uri-reference"},
    },
}

RESPONSES: Json = {
    "BadRequest": error("A parameter or the request itself is invalid (`error.code` says which: `invalid_limit`, "
                        "`invalid_cursor`, `invalid_wait`, `invalid_size`, `invalid_sha256`, `invalid_max_distance`, "
                        "`missing_file`, `empty_file`, "
                        "`invalid_idempotency_key`, `malformed_body`, `bad_request`)."),
    "Unauthorized": error("An API key is required (the deployment sets `APERCU_API_KEYS` or `APERCU_API_KEYS_FILE`) "
                          "and the request carried none, or an unknown one.",
                          {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "enum": ["Bearer"]}}}),
    "NotFound": error("No image with this id (never was, deleted, or not an id at all)."),
    "NotReady": error("Not processed yet, or this size or format is still being rendered: ask again after "
                      "`Retry-After` seconds, or use `?wait=`.", {"Retry-After": ref("headers", "Retry-After")}),
    "TooLarge": error("The file is larger than the maximum upload size (`APERCU_MAX_UPLOAD_BYTES`); refused from "
                      "`Content-Length` before the body is read when it is declared."),
    "UnsupportedFormat": error("Not an image of a supported format (recognised from its content, never from its "
                               "name or the part's Content-Type)."),
    "Busy": error("Too many images are waiting to be processed (`APERCU_MAX_PENDING`): retry after `Retry-After` "
                  "seconds.", {"Retry-After": ref("headers", "Retry-After")}),
    "DiskFull": error("The data disk is nearly full (less than `APERCU_MIN_FREE_MB` free): uploads are refused "
                      "until space is freed."),
    # What the HTTP server itself answers, before any route sees the request: possible on every operation.
    "RequestTimeout": error("The request did not arrive in time (`APERCU_REQUEST_TIMEOUT`)."),
    "UriTooLong": error("The request line is too long."),
    "HeadersTooLarge": error("The request's headers are too large."),
}
SERVER_REFUSALS = {"408": "RequestTimeout", "414": "UriTooLong", "431": "HeadersTooLarge"}


# -- Schemas ----------------------------------------------------------------------------------------------------

NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
STRING = {"type": "string"}
TEXT_MAP = {"type": "object", "additionalProperties": STRING}


def described(description: str, base: Json) -> Json:
    return {**base, "description": description}


def iptc_schema() -> Json:
    """IPTC-IIM fields by ExifTool name, typed as `imaging.iptc` reads them."""
    properties: Json = {}
    for name in sorted({*NAMES.values(), *ENVELOPE_NAMES.values()}):
        if name in REPEATABLE:
            properties[name] = {"type": "array", "items": STRING}
        elif name == "ApplicationRecordVersion":
            properties[name] = {"type": ["integer", "string"]}
        elif name in DATES:
            properties[name] = described("`YYYY-MM-DD` when the field holds a valid IIM date", STRING)
        else:
            properties[name] = STRING
    return {
        "type": "object",
        "description": "IPTC-IIM fields (JPEG APP13, TIFF tag 33723) under ExifTool's names; repeatable ones "
        "(`Keywords`, `By-line`, ...) always arrays; text decoded as UTF-8 (else Latin-1).",
        "properties": properties,
        "additionalProperties": {"type": ["string", "integer", "array"]},
    }


SCHEMAS: Json = {
    "Error": {
        "type": "object",
        "description": "Every error, whatever the status.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": described("Machine-readable: `not_found`, `not_ready`, `invalid_limit`, ...", STRING),
                    "message": described("For people.", STRING),
                },
            }
        },
    },
    "ImageLinks": {
        "type": "object",
        "required": ["self", "thumbnail"],
        "properties": {
            "self": described("`/images/{id}`", {"type": "string", "format": "uri-reference"}),
            "thumbnail": described("`/thumbnails/{id}.jpg`", {"type": "string", "format": "uri-reference"}),
        },
    },
    "Status": {
        "type": "string",
        "enum": ["pending", "processing", "success", "failure"],
        "description": "`pending` (waiting for a worker), `processing`, then `success` or `failure` (see `error`).",
    },
    "Accepted": {
        "type": "object",
        "description": "The upload is stored and recorded; processing happens in the background.",
        "required": ["id", "status", "links"],
        "properties": {
            "id": {"type": "string", "pattern": ID_PATTERN},
            "status": schema("Status"),
            "links": schema("ImageLinks"),
            "duplicate": described("Present (true) when the bytes were already stored (`APERCU_DEDUP=reuse`): this "
                                   "is the stored image, and nothing new was created.", {"type": "boolean"}),
        },
    },
    "Image": {
        "type": "object",
        "required": ["id", "status", "filename", "uploaded_at", "processed_at", "error", "links"],
        "properties": {
            "id": {"type": "string", "pattern": ID_PATTERN},
            "status": schema("Status"),
            "filename": described("The client's name for the file (display only), if it gave one.",
                                  {"type": ["string", "null"]}),
            "uploaded_at": described("UTC.", {"type": "string", "format": "date-time"}),
            "processed_at": described("UTC; null until processing has ended.",
                                      {"type": ["string", "null"], "format": "date-time"}),
            "error": described("Why processing failed (status `failure`), else null.", {"type": ["string", "null"]}),
            "links": schema("ImageLinks"),
            "metadata": schema("Metadata"),
            "thumbnail": schema("Thumbnail"),
            "distance": described("Only in `GET /images?similar_to=` results: bits of the perceptual hash that differ "
                                  "from the reference image's.", {"type": "integer", "minimum": 0, "maximum": 64}),
            "webhooks": described("Only in `GET /images/{id}`, when completion webhooks were due for this image: "
                                  "each delivery and how it went.", {"type": "array", "items": schema("Delivery")}),
        },
    },
    "Delivery": {
        "type": "object",
        "description": "One completion webhook: a signed POST of the image's JSON to `url`, retried with backoff.",
        "required": ["id", "url", "status", "attempts", "last_status", "last_error", "delivered_at"],
        "properties": {
            "id": described("Sent as `X-Apercu-Delivery`, the same on every attempt.", {"type": "string"}),
            "url": {"type": "string", "format": "uri"},
            "status": described("`waiting` for the image to settle (a duplicate's uploader), then `pending` until "
                                "`delivered`, or `failed` once given up.",
                                {"type": "string", "enum": ["waiting", "pending", "delivered", "failed"]}),
            "attempts": {"type": "integer", "minimum": 0},
            "last_status": described("The receiver's last HTTP status, if it answered.",
                                     {"type": ["integer", "null"]}),
            "last_error": {"type": ["string", "null"]},
            "delivered_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "Thumbnail": {
        "type": "object",
        "description": "The default JPEG thumbnail; present once processing succeeded.",
        "required": ["width", "height", "bytes", "url"],
        "properties": {
            "width": {"type": "integer", "minimum": 1},
            "height": {"type": "integer", "minimum": 1},
            "bytes": {"type": "integer", "minimum": 1},
            "url": {"type": "string", "format": "uri-reference"},
        },
    },
    "ImagePage": {
        "type": "object",
        "required": ["items", "next_cursor", "links"],
        "properties": {
            "items": {"type": "array", "items": schema("Image"), "maxItems": MAX_PAGE},
            "next_cursor": described("Pass as `?cursor=` for the next page; null on the last page.",
                                     {"type": ["string", "null"]}),
            "links": {
                "type": "object",
                "properties": {"next": described("The next page's URL, when there is one.",
                                                 {"type": "string", "format": "uri-reference"})},
            },
        },
    },
    "Metadata": {
        "type": "object",
        "description": "What the file says about itself, read from its header and metadata blocks. Present once "
        "processing has ended; after a failure it holds whatever could still be read (possibly only `format`, "
        "`bytes`, `sha256` and `warnings`), so every field is optional.",
        "properties": {
            "format": {"type": "string", "enum": [fmt.name for fmt in FORMATS]},
            "mime_type": {"type": "string", "enum": [fmt.mime_type for fmt in FORMATS]},
            "width": described("As displayed (EXIF orientation applied).", {"type": "integer", "minimum": 1}),
            "height": described("As displayed (EXIF orientation applied).", {"type": "integer", "minimum": 1}),
            "raw_width": described("As stored.", {"type": "integer", "minimum": 1}),
            "raw_height": described("As stored.", {"type": "integer", "minimum": 1}),
            "mode": described("Pillow's pixel mode.", {"type": "string", "examples": ["RGB", "RGBA", "L", "P", "CMYK",
                                                                                   "I;16"]}),
            "bit_depth": described("Bits per sample as stored.", {"type": "integer", "minimum": 1}),
            "has_alpha": {"type": "boolean"},
            "frames": described("Frames (animations) or pages (TIFF).", {"type": "integer", "minimum": 1}),
            "dpi": described("Horizontal and vertical resolution, when the file records one.",
                             {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0},
                              "minItems": 2, "maxItems": 2}),
            "orientation": described("EXIF orientation as written (1-8); absent when missing or out of range.",
                                     {"type": "integer", "minimum": 1, "maximum": 8}),
            "color_space": described("The ICC profile's colour space, else the pixel mode's family.",
                                     {"type": "string", "examples": ["RGB", "Gray", "CMYK", "YCbCr", "Lab"]}),
            "bytes": described("Size of the original.", {"type": "integer", "minimum": 1}),
            "sha256": described("Of the original's bytes.", {"type": "string", "pattern": "^[0-9a-f]{64}$"}),
            "phash": described("64-bit perceptual hash (DCT pHash, as the `imagehash` package computes it), as 16 hex "
                               "digits: resized, recompressed or lightly edited copies differ in a few bits.",
                               {"type": "string", "pattern": "^[0-9a-f]{16}$"}),
            "blurhash": described("A BlurHash (https://blurha.sh) of 4x3 components, to paint as a placeholder.",
                                  {"type": "string", "pattern": "^[0-9A-Za-z#$%*+,.:;=?@\\[\\]^_{|}~-]{6,}$"}),
            "animated": described("Present (true) for animated GIF, PNG and WebP.", {"type": "boolean"}),
            "loop": described("Loop count of an animation (0: forever).", {"type": "integer", "minimum": 0}),
            "duration_ms": described("Total duration of an animation.", {"type": "integer", "minimum": 0}),
            "exif": schema("Exif"),
            "gps": schema("Gps"),
            "xmp": schema("Xmp"),
            "iptc": schema("Iptc"),
            "icc": schema("Icc"),
            "makernotes": schema("MakerNotes"),
            "text": described("PNG text chunks (tEXt, zTXt, iTXt) by keyword, and JPEG/GIF comments (`Comment`).",
                              TEXT_MAP),
            "warnings": described("What could not be read (a malformed EXIF directory, a corrupt chunk...); the "
                                  "rest still came out.", {"type": "array", "items": STRING, "maxItems": 20}),
        },
    },
    "Exif": {
        "type": "object",
        "description": "Every tag of IFD0, the Exif IFD, the Interop IFD and GPS under ExifTool's tag names "
        "(unknown tags under their hex id, `0xc4a5`), with the values `exiftool -n` gives: numbers, arrays for "
        "multiple values, ISO 8601 dates, text, and binary blobs as `{\"bytes\": N}`.",
        "propertyNames": {"type": "string", "minLength": 1},
        "additionalProperties": schema("ExifValue"),
        "examples": [{"Make": "NIKON", "ExposureTime": 0.0133, "ISO": 64, "DateTimeOriginal": "2008-10-22T16:28:39",
                      "ComponentsConfiguration": [1, 2, 3, 0], "MakerNote": {"bytes": 3298}}],
    },
    "ExifValue": {
        "anyOf": [
            {"type": ["string", "number", "boolean"]},
            schema("Blob"),
            {"type": "array", "items": {"anyOf": [schema("ExifValue"), {"type": "null"}]}},
        ],
    },
    "MakerNotes": {
        "type": "object",
        "description": "The camera maker's notes, decoded by ExifTool (only with APERCU_EXIFTOOL=1 and exiftool "
        "installed): ExifTool's maker groups (`Canon`, `CanonCustom`, `Nikon`, `Apple`, `FujiFilm`...), each with "
        "its tags under ExifTool's names and the values `exiftool -n` gives, typed as in `exif`; values over 4 KiB "
        "as `{\"bytes\": N}`. Absent when the file has none.",
        "additionalProperties": {"type": "object", "additionalProperties": schema("ExifValue")},
        "examples": [{"Canon": {"MacroMode": 2, "FocalLength": 346, "CanonImageType": "IMG:DIGITAL IXUS 40 JPEG",
                                "AFAreaXPositions": [-409, 0, 409]}}],
    },
    "Blob": {
        "type": "object",
        "description": "Binary data, by its size.",
        "required": ["bytes"],
        "properties": {"bytes": {"type": "integer", "minimum": 0}},
    },
    "Gps": {
        "type": "object",
        "description": "The position decoded from the EXIF GPS tags: signed decimal degrees, metres.",
        "properties": {
            "latitude": {"type": "number", "minimum": -90, "maximum": 90},
            "longitude": {"type": "number", "minimum": -180, "maximum": 180},
            "altitude": described("Metres; negative below sea level.", NUMBER),
            "timestamp": described("UTC, ISO 8601 (`2008-10-23T14:27:07.24Z`), from GPSDateStamp and GPSTimeStamp.",
                                   STRING),
            "speed": NUMBER,
            "speed_unit": {"type": "string", "enum": sorted(set(SPEED_UNITS.values()))},
            "direction": described("Direction the camera pointed, in degrees.", NUMBER),
            "direction_ref": {"type": "string", "enum": ["true", "magnetic"]},
            "track": described("Direction of movement, in degrees.", NUMBER),
            "track_ref": {"type": "string", "enum": ["true", "magnetic"]},
        },
        "dependentRequired": {
            "latitude": ["longitude"], "longitude": ["latitude"], "speed": ["speed_unit"],
            "direction": ["direction_ref"], "track": ["track_ref"],
        },
    },
    "Xmp": {
        "type": "object",
        "description": "The XMP packet flattened to `prefix:Name` as ExifTool names them: arrays (Bag, Seq) as "
        "arrays, language alternatives as their x-default text, structures as `NameField` keys, rationals as "
        "numbers.",
        "additionalProperties": {"type": ["string", "number", "array", "null"]},
        "examples": [{"dc:subject": ["travel", "tuscany"], "xmp:Rating": "3", "exif:FNumber": 5.6}],
    },
    "Iptc": iptc_schema(),
    "Icc": {
        "type": "object",
        "description": "The embedded colour profile, from its header and text tags.",
        "properties": {
            "description": STRING,
            "copyright": STRING,
            "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
            "device_class": described("`mntr`, `scnr`, `prtr`, `spac`, ...", STRING),
            "color_space": described("`RGB`, `GRAY`, `CMYK`, `Lab`, ...", STRING),
            "connection_space": described("`XYZ` or `Lab`.", STRING),
            "rendering_intent": {"type": "integer", "minimum": 0},
            "rendering_intent_name": {"type": "string", "enum": [*INTENTS.values(), "unknown"]},
            "cmm": STRING,
            "manufacturer": STRING,
            "model": STRING,
            "created": described("`YYYY-MM-DDTHH:MM:SS` as the profile records it (no time zone).", STRING),
            "bytes": {"type": "integer", "minimum": 128},
        },
    },
    "Index": {
        "type": "object",
        "required": ["status", "message", "version", "endpoints"],
        "properties": {
            "status": {"type": "string"},
            "message": STRING,
            "version": STRING,
            "endpoints": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["method", "path", "description"],
                    "properties": {"method": STRING, "path": STRING, "description": STRING},
                },
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["ok"]}},
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "checks": {
                "type": "object",
                "description": "Each dependency (`catalog`, `storage`, `broker`, `workers`): `ok`, or why not.",
                "additionalProperties": STRING,
            },
        },
    },
}


# -- Operations -------------------------------------------------------------------------------------------------


def thumbnail_operation(ext: str, mime: str) -> Json:
    variant = "JPEG" if ext == "jpg" else "WebP"
    return {
        "operationId": f"getThumbnail{variant.capitalize()}",
        "tags": ["thumbnails"],
        "summary": f"The {variant} thumbnail once processed (?size=N of the configured sizes, ?wait=N)",
        "description": "Upright (EXIF orientation applied), in sRGB, without any metadata. The default size as "
        "JPEG is made while processing; other sizes and WebP are rendered by a worker on first request "
        "(meanwhile 409 + Retry-After, or the answer once it is there with `?wait=`) and kept.",
        "parameters": [ref("parameters", "ImageId"), ref("parameters", "Size"),
                       ref("parameters", "Wait")],
        "responses": {
            "200": {
                "description": "The thumbnail.",
                "headers": {"ETag": ref("headers", "ETag"), "Cache-Control": ref("headers", "Cache-Control")},
                "content": {mime: {"schema": {"type": "string", "contentMediaType": mime}}},
            },
            "302": {
                "description": "With `APERCU_S3_PRESIGN` set: a redirect to a presigned URL of the object store.",
                "headers": {
                    "Location": {"required": True, "schema": {"type": "string", "format": "uri"}},
                    "ETag": ref("headers", "ETag"),
                    "Cache-Control": ref("headers", "Cache-Control"),
                },
            },
            "304": {
                "description": "Not modified (`If-None-Match` matched the ETag).",
                "headers": {"ETag": ref("headers", "ETag"), "Cache-Control": ref("headers", "Cache-Control")},
            },
            "400": ref("responses", "BadRequest"),
            "404": error("No image with this id; or no thumbnail: processing failed, or this variant could not "
                         "be rendered (`no_thumbnail`, with the reason)."),
            "409": ref("responses", "NotReady"),
        },
    }


def delete_operation(operation_id: str, summary: str) -> Json:
    return {
        "operationId": operation_id,
        "tags": ["images"],
        "summary": summary,
        "description": "Removes the record, then the original and every thumbnail.",
        "parameters": [ref("parameters", "ImageId")],
        "responses": {
            "204": {"description": "Deleted."},
            "404": ref("responses", "NotFound"),
        },
    }


OPERATIONS: dict[tuple[str, str], Json] = {
    ("GET", "/"): {
        "operationId": "index",
        "tags": ["service"],
        "summary": "Service status and this list of endpoints",
        "description": "JSON for programs; a browser (`Accept: text/html`) gets a web page to upload and browse "
        "images.",
        "responses": {
            "200": {
                "description": "Up.",
                "content": {"application/json": {"schema": schema("Index")},
                            "text/html": {"schema": {"type": "string"}}},
            },
        },
    },
    ("POST", "/images"): {
        "operationId": "uploadImage",
        "tags": ["images"],
        "summary": "Upload an image (multipart field 'file'); 202 with its id, processed asynchronously",
        "description": "JPEG, PNG, TIFF, BMP, TGA, GIF, WebP, HEIC/HEIF or AVIF, recognised from its content. The "
        "202 means stored and recorded; metadata and thumbnail follow (poll `links.self`, or `?wait=`).",
        "parameters": [ref("parameters", "IdempotencyKey")],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary",
                                     "contentMediaType": "application/octet-stream",
                                     "description": "The image; its part's filename is kept for display."},
                            "callback_url": {"type": "string", "format": "uri", "maxLength": 2048,
                                             "description": "Told when the image reaches success or failure: a "
                                             "signed POST of its JSON (needs `APERCU_WEBHOOK_SECRET`; public "
                                             "http(s) hosts only, unless `APERCU_WEBHOOK_ALLOWED_HOSTS`)."},
                        },
                    },
                    "encoding": {"file": {"contentType": "application/octet-stream, image/*"}},
                }
            },
        },
        "responses": {
            "202": {
                "description": "Accepted: stored and recorded, queued for processing. With an `Idempotency-Key` "
                "seen before, the first upload's image (whatever its status now) and `Idempotent-Replayed: true`.",
                "headers": {
                    "Location": ref("headers", "ImageLocation"),
                    "Idempotent-Replayed": {
                        "description": "Present (`true`) when this answers an earlier upload with the same key.",
                        "schema": {"type": "string", "enum": ["true"]},
                    },
                },
                "content": {"application/json": {"schema": schema("Accepted")}},
                "links": {
                    "GetImage": {"operationId": "getImage", "parameters": {"id": "$response.body#/id"}},
                    "GetThumbnail": {"operationId": "getThumbnailJpeg", "parameters": {"id": "$response.body#/id"}},
                    "DeleteImage": {"operationId": "deleteImage", "parameters": {"id": "$response.body#/id"}},
                },
            },
            "200": {
                "description": "With `APERCU_DEDUP=reuse`, when these bytes are already stored: the stored image "
                "(`\"duplicate\": true`), and no new one.",
                "headers": {"Location": ref("headers", "ImageLocation")},
                "content": {"application/json": {"schema": schema("Accepted")}},
            },
            "400": ref("responses", "BadRequest"),
            "413": ref("responses", "TooLarge"),
            "415": ref("responses", "UnsupportedFormat"),
            "503": ref("responses", "Busy"),
            "507": ref("responses", "DiskFull"),
        },
    },
    ("GET", "/images"): {
        "operationId": "listImages",
        "tags": ["images"],
        "summary": "List images, newest first (?limit=, ?cursor=); or find them by content (?sha256=, ?similar_to=)",
        "parameters": [ref("parameters", "Limit"), ref("parameters", "Cursor"), ref("parameters", "Sha256"),
                       ref("parameters", "SimilarTo"), ref("parameters", "MaxDistance")],
        "responses": {
            "200": json_body("A page of images.", schema("ImagePage")),
            "400": ref("responses", "BadRequest"),
            "404": error("`similar_to`: no image with this id."),
            "409": ref("responses", "NotReady"),
            "422": error("`similar_to`: that image has no perceptual hash to compare with (`no_phash`: its "
                         "processing failed, or it predates perceptual hashes)."),
        },
    },
    ("GET", "/images/{id}"): {
        "operationId": "getImage",
        "tags": ["images"],
        "summary": "Status and metadata of one image (?wait=N holds until processed, up to 30 s)",
        "parameters": [ref("parameters", "ImageId"), ref("parameters", "Wait")],
        "responses": {
            "200": json_body("The image.", schema("Image")),
            "400": ref("responses", "BadRequest"),
            "404": ref("responses", "NotFound"),
        },
    },
    ("GET", "/thumbnails/{id}.jpg"): thumbnail_operation("jpg", "image/jpeg"),
    ("GET", "/thumbnails/{id}.webp"): thumbnail_operation("webp", "image/webp"),
    ("DELETE", "/delete/{id}"): delete_operation("deleteImageLegacy", "Delete an image, its thumbnail and its record"),
    ("DELETE", "/images/{id}"): delete_operation("deleteImage", "Same as DELETE /delete/{id}"),
    ("GET", "/healthz"): {
        "operationId": "healthz",
        "tags": ["service"],
        "summary": "Liveness: 200 while the process runs",
        "responses": {"200": json_body("Alive.", schema("Health"))},
    },
    ("GET", "/readyz"): {
        "operationId": "readyz",
        "tags": ["service"],
        "summary": "Readiness: 200 only when catalog, storage and broker answer and a worker is alive",
        "responses": {
            "200": json_body("Ready: every check is `ok`.", schema("Readiness")),
            "503": json_body("Not ready: the failing checks say why.", schema("Readiness")),
        },
    },
    ("GET", "/metrics"): {
        "operationId": "metrics",
        "tags": ["service"],
        "summary": "Prometheus metrics (text exposition format)",
        "responses": {
            "200": {"description": "The metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}},
        },
    },
    ("GET", "/openapi.json"): {
        "operationId": "openapi",
        "tags": ["docs"],
        "summary": "This API as an OpenAPI 3.1 document",
        "responses": {
            "200": json_body("This document.", {"type": "object", "required": ["openapi", "info", "paths"]}),
        },
    },
    ("GET", "/docs"): {
        "operationId": "docs",
        "tags": ["docs"],
        "summary": "Interactive API documentation (Swagger UI, served locally)",
        "responses": {
            "200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}},
        },
    },
    ("GET", "/docs/{asset}"): {
        "operationId": "docsAsset",
        "tags": ["docs"],
        "summary": "The documentation page's scripts, stylesheet and icons",
        "parameters": [ref("parameters", "Asset")],
        "responses": {
            "200": {
                "description": "The file.",
                "content": {media: {"schema": {"type": "string"}} for media in
                            ("text/css", "text/javascript", "image/png")},
            },
            "304": {"description": "Not modified."},
            "404": error("No such asset."),
        },
    },
}

ENDPOINTS: tuple[tuple[str, str, str], ...] = tuple((m, p, op["summary"]) for (m, p), op in OPERATIONS.items())


def asset_parameter() -> Json:
    return {
        "name": "asset",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": sorted(ASSETS)},
    }


def with_access(path: str, operation: Json, public: tuple[str, ...]) -> Json:
    """The operation with what the HTTP server and API keys add: the server's own refusals (408, 414, 431) on every
    operation; nothing asked of a public path (`access.PUBLIC_PATHS`), a 401 possible everywhere else."""
    server = {status: ref("responses", name) for status, name in SERVER_REFUSALS.items()}
    responses = dict(operation["responses"]) | server
    if is_public(path, public):
        return {**operation, "security": [], "responses": dict(sorted(responses.items()))}
    responses["401"] = ref("responses", "Unauthorized")
    return {**operation, "responses": dict(sorted(responses.items()))}


def document(version: str, settings: Settings | None = None) -> Json:
    """The whole document; with the settings, the thumbnail sizes this deployment serves are listed (and its
    thumbnails are public with APERCU_PUBLIC_THUMBNAILS)."""
    public = PUBLIC_PATHS if settings is None else public_paths(settings)
    paths: Json = {}
    for (method, path), operation in OPERATIONS.items():
        paths.setdefault(path, {})[method.lower()] = with_access(path, operation, public)
    max_upload = f" Uploads up to {settings.max_upload_bytes} bytes." if settings is not None else ""
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {
            "title": "apercu",
            "version": version,
            "summary": "Image ingestion: upload, metadata as clean JSON, asynchronous thumbnails, delete.",
            "description": "Upload an image, get its metadata (size, format, orientation, EXIF, GPS, XMP, IPTC, "
            "ICC...) as JSON and its thumbnails once a worker has processed it. Errors are always JSON: "
            "`{\"error\": {\"code\": ..., \"message\": ...}}`. API keys are optional: when the deployment sets "
            "some, every operation that documents a 401 needs one, as `X-API-Key: <key>` or `Authorization: Bearer "
            "<key>`; the service's status, health, metrics and documentation stay open. Every answer carries an "
            "`X-Request-ID` (the client's own when it sends a sane one), which the service's log lines repeat."
            + max_upload,
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "images", "description": "Upload, read, list and delete images."},
            {"name": "thumbnails", "description": "Thumbnails in several sizes, JPEG and WebP."},
            {"name": "service", "description": "Status, health, readiness and metrics."},
            {"name": "docs", "description": "This document and its interactive rendering."},
        ],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "parameters": {**PARAMETERS, "Size": size_parameter(settings), "Asset": asset_parameter()},
            "headers": HEADERS,
            "responses": RESPONSES,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer", "description": "The same API key, as a bearer token."},
            },
        },
        "security": [{}, {"ApiKey": []}, {"Bearer": []}],
    })
