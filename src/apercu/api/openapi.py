"""The OpenAPI document, and the endpoint list that GET / shows; both come from the one table below."""

from __future__ import annotations

from typing import Any

ENDPOINTS: tuple[tuple[str, str, str], ...] = (
    ("GET", "/", "Service status and this list of endpoints"),
    ("POST", "/images", "Upload an image (multipart field 'file'); 202 with its id, processed asynchronously"),
    ("GET", "/images", "List images, newest first (?limit=, ?cursor=)"),
    ("GET", "/images/{id}", "Status and metadata of one image (?wait=N holds until processed, up to 30 s)"),
    ("GET", "/thumbnails/{id}.jpg", "The JPEG thumbnail once processed (?size=N of the configured sizes, ?wait=N)"),
    ("GET", "/thumbnails/{id}.webp", "The same thumbnail as WebP (?size=N, ?wait=N)"),
    ("DELETE", "/delete/{id}", "Delete an image, its thumbnail and its record"),
    ("DELETE", "/images/{id}", "Same as DELETE /delete/{id}"),
    ("GET", "/healthz", "Liveness: 200 while the process runs"),
    ("GET", "/readyz", "Readiness: 200 only when catalog, storage and broker answer"),
    ("GET", "/openapi.json", "This API as an OpenAPI 3.1 document"),
)

ERROR = {"$ref": "#/components/schemas/Error"}
IMAGE = {"$ref": "#/components/schemas/Image"}
ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
WAIT_PARAM = {"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 30}}
SIZE_PARAM = {"name": "size", "in": "query", "schema": {"type": "integer"}}

def thumbnail_responses(mime: str) -> dict[str, Any]:
    return {
        "200": {"description": "the thumbnail", "content": {mime: {}}},
        "304": {"description": "not modified (If-None-Match)"},
        "400": {"description": "size not among the configured sizes"},
        "404": {"description": "unknown id or processing failed"},
        "409": {"description": "not processed yet; see Retry-After"},
    }


RESPONSES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/"): {"200": {"description": "up"}},
    ("POST", "/images"): {
        "202": {"description": "accepted", "headers": {"Location": {"schema": {"type": "string"}}}},
        "400": {"description": "no file, or an empty one"},
        "413": {"description": "larger than the maximum upload size"},
        "415": {"description": "not an image of a supported format"},
    },
    ("GET", "/images"): {"200": {"description": "a page of images"}, "400": {"description": "bad limit or cursor"}},
    ("GET", "/images/{id}"): {"200": {"description": "the image", "schema": IMAGE}, "404": {"description": "unknown"}},
    ("GET", "/thumbnails/{id}.jpg"): thumbnail_responses("image/jpeg"),
    ("GET", "/thumbnails/{id}.webp"): thumbnail_responses("image/webp"),
    ("DELETE", "/delete/{id}"): {"204": {"description": "deleted"}, "404": {"description": "unknown"}},
    ("DELETE", "/images/{id}"): {"204": {"description": "deleted"}, "404": {"description": "unknown"}},
    ("GET", "/healthz"): {"200": {"description": "alive"}},
    ("GET", "/readyz"): {"200": {"description": "ready"}, "503": {"description": "a dependency is down"}},
    ("GET", "/openapi.json"): {"200": {"description": "this document"}},
}

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Image": {
        "type": "object",
        "required": ["id", "status", "filename", "uploaded_at", "processed_at", "error", "links"],
        "properties": {
            "id": {"type": "string"},
            "status": {"enum": ["pending", "processing", "success", "failure"]},
            "filename": {"type": ["string", "null"]},
            "uploaded_at": {"type": "string", "format": "date-time"},
            "processed_at": {"type": ["string", "null"], "format": "date-time"},
            "error": {"type": ["string", "null"]},
            "links": {"type": "object"},
            "metadata": {"type": "object"},
            "thumbnail": {"type": "object"},
        },
    },
}


def _operation(method: str, path: str, description: str) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    if "{id}" in path:
        params.append(ID_PARAM)
    if method == "GET" and "{id}" in path:
        params.append(WAIT_PARAM)
    if path.startswith("/thumbnails/"):
        params.append(SIZE_PARAM)
    responses = {}
    for status, spec in RESPONSES[(method, path)].items():
        spec = dict(spec)
        schema = spec.pop("schema", ERROR if status[0] in "45" else None)
        if schema and "content" not in spec:
            spec["content"] = {"application/json": {"schema": schema}}
        responses[status] = spec
    return {"summary": description, "parameters": params, "responses": responses}


def document(version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, description in ENDPOINTS:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, description)
    return {
        "openapi": "3.1.0",
        "info": {"title": "apercu", "version": version},
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
