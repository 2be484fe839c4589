"""The OpenAPI 3.1 document (GET /openapi.json, rendered at /docs), and the endpoint list GET / shows, both made
from one source: the operations (`api.contract`), checked to be exactly the app's routes, with their inputs'
declarations (`api.inputs`) as parameters and request bodies, and their answers' models (`api.models`) as JSON
Schema. Nothing here restates a path, a parameter, a status or an error code; tests/test_openapi.py checks that
real answers (and a schemathesis run against a live service) conform to what is generated.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from flask import Flask, has_request_context, request

from apercu import __version__
from apercu.api import metadata_schema, rate_limit
from apercu.api.access import is_public, public_paths
from apercu.api.contract import (
    HEADERS,
    OPERATIONS,
    OUTAGE_REFUSALS,
    RESPONSES,
    SERVER_REFUSALS,
    WEBHOOKS,
    error,
    shared,
)
from apercu.api.errors import CODES
from apercu.api.inputs import SOURCE_URL, Declared, File, Json, codes
from apercu.api.models import EndpointJson
from apercu.api.multipart import MalformedBody
from apercu.api.operation import Operation, routed
from apercu.config import Settings
from apercu.service import Service
from apercu.typed_schema import Schemas

FILE_TYPES = "application/octet-stream, image/*"


def endpoints(app: Flask) -> list[EndpointJson]:
    """GET /'s list: every operation, as the document has them."""
    return [{"method": op.method, "path": op.path, "description": op.summary} for op in routed(app, OPERATIONS)]


def component(declared: Declared) -> str:
    """A parameter's component name: `max_distance` -> `MaxDistance`."""
    return "".join(part.capitalize() for part in re.split(r"[_-]", declared.name))


def parameter_ref(declared: Declared) -> Json:
    return {"$ref": f"#/components/parameters/{component(declared)}"}


def resolved(node: Any, schemas: Schemas) -> Any:
    """A document fragment with every model in it replaced by its schema (a reference to its component)."""
    if isinstance(node, dict):
        return {key: resolved(value, schemas) for key, value in node.items()}
    if isinstance(node, type):
        return schemas.of(node)
    return node


def request_body(form: list[Declared]) -> Json:
    """The multipart body of the form inputs, with a file part, or (when the operation takes one) the source `url`
    instead; and then the same fields but files as a JSON object, the `url` required."""
    properties = {field.name: {**field.schema(), "description": field.description} for field in form}
    files = [field.name for field in form if isinstance(field, File)]
    encoding = {name: {"contentType": FILE_TYPES} for name in files}
    if SOURCE_URL not in form:
        schema = {"type": "object", "required": files, "properties": properties}
        return {"required": True, "content": {"multipart/form-data": {"schema": schema, "encoding": encoding}}}
    either = [{"required": [name]} for name in [*files, SOURCE_URL.name]]
    multipart = {"type": "object", "anyOf": either, "properties": properties}
    texts = {name: field for name, field in properties.items() if name not in files}
    json_body = {"type": "object", "required": [SOURCE_URL.name], "properties": texts}
    return {"required": True, "content": {"multipart/form-data": {"schema": multipart, "encoding": encoding},
                                          "application/json": {"schema": json_body}}}


def operation_object(operation: Operation, schemas: Schemas) -> Json:
    """The operation as the document writes it (before `with_access`)."""
    parameters = [parameter_ref(i) for i in operation.inputs if i.where != "form"]
    form = [i for i in operation.inputs if i.where == "form"]
    written: Json = {"operationId": operation.operation_id, "tags": [operation.tag], "summary": operation.summary}
    if operation.description:
        written["description"] = operation.description
    if parameters:
        written["parameters"] = parameters
    if form:
        written["requestBody"] = request_body(form)
    if operation.body is not None:
        written["requestBody"] = operation.body
    return written | {"responses": resolved(operation.responses, schemas)}


def with_access(operation: Operation, written: Json, public: tuple[str, ...]) -> Json:
    """The operation with what the HTTP server, outages and API keys add: the server's own refusals (408, 414, 431)
    and a dependency's outage (503, unless the operation documents its own) on every operation; nothing asked of a
    public path (`access.PUBLIC_PATHS`), a 401 possible everywhere else, and, for an operation that declares a
    scope, that scope as its security requirement's role (OpenAPI 3.1 allows roles for API keys) and a 403."""
    server = {status: shared(name) for status, name in (OUTAGE_REFUSALS | SERVER_REFUSALS).items()}
    responses = server | dict(written["responses"])
    if is_public(operation.path, public):
        return {**written, "security": [], "responses": dict(sorted(responses.items()))}
    responses["401"] = shared("Unauthorized")
    if operation.scope is None:
        return {**written, "responses": dict(sorted(responses.items()))}
    responses["403"] = shared("Forbidden")
    security = [{}, {"ApiKey": [operation.scope]}, {"Bearer": [operation.scope]}]
    needs = f"Needs a key with the `{operation.scope}` scope (or `admin`) when the deployment requires keys."
    description = f"{written.get('description', '')} {needs}".strip()
    return {**written, "description": description, "security": security,
            "responses": dict(sorted(responses.items()))}


def bad_request(operations: tuple[Operation, ...]) -> Json:
    """The shared 400: the codes of every input that refuses a bad value with one, then the body's and the generic
    one."""
    every = [i for operation in operations for i in operation.inputs]
    listed = ", ".join(f"`{code}`" for code in [*codes(every), MalformedBody.code, CODES[400]])
    return error(f"A parameter or the request itself is invalid (`error.code` says which: {listed}).")


def components(operations: tuple[Operation, ...], settings: Settings, schemas: Schemas) -> Json:
    inputs = {component(i): i.configured(settings) for operation in operations for i in operation.inputs}
    responses = resolved(RESPONSES | {"BadRequest": bad_request(operations)}, schemas)
    return {
        "schemas": schemas.components | metadata_schema.SCHEMAS,
        "parameters": {name: i.parameter() for name, i in inputs.items() if i.where != "form"},
        "headers": HEADERS,
        "responses": dict(sorted(responses.items())),
        "securitySchemes": {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "Bearer": {"type": "http", "scheme": "bearer", "description": "The same API key, as a bearer token."},
        },
    }


def document(app: Flask) -> Json:
    """The whole document for this app: its deployment's thumbnail sizes, upload limit and public paths (its
    thumbnails are public with APERCU_PUBLIC_THUMBNAILS)."""
    service: Service = app.extensions["apercu"]
    settings = service.settings
    operations = routed(app, OPERATIONS)
    schemas = Schemas()
    public = public_paths(settings)
    paths: Json = {}
    for operation in operations:
        written = with_access(operation, operation_object(operation, schemas), public)
        written = rate_limit.documented(operation.method, operation.path, written, settings)
        paths.setdefault(operation.path, {})[operation.method.lower()] = written
    webhooks = resolved(WEBHOOKS, schemas)  # (before the components, which hold the schemas it reaches)
    parts = components(operations, settings, schemas)
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {
            "title": "apercu",
            "version": __version__,
            "summary": "Image ingestion: upload, metadata as clean JSON, asynchronous thumbnails, delete.",
            "description": "Upload an image, get its metadata (size, format, orientation, EXIF, GPS, XMP, IPTC, "
            "ICC...) as JSON and its thumbnails once a worker has processed it. Errors are always JSON: "
            "`{\"error\": {\"code\": ..., \"message\": ...}}`, or RFC 9457 problem details (`type`, `title`, "
            "`status`, `detail`, `instance`, and the same `code`) for a client whose `Accept` prefers "
            "`application/problem+json`. API keys are optional: when the deployment sets "
            "some, every operation that documents a 401 needs one, as `X-API-Key: <key>` or `Authorization: Bearer "
            "<key>`, holding the scope its `security` names (`read`, `write`, `delete`; `admin` holds every scope "
            "and sees every tenant), else 403 `insufficient_scope`; the service's status, health, metrics (unless "
            "closed by the deployment) and documentation stay open. Every answer carries an "
            "`X-Request-ID` (the client's own when it sends a sane one), which the service's log lines repeat."
            f" Uploads up to {settings.max_upload_bytes} bytes.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": f"{request.script_root}/" if has_request_context() else "/"}],  # behind a proxy: its prefix
        "tags": [
            {"name": "images", "description": "Upload, read, list and delete images."},
            {"name": "thumbnails", "description": "Thumbnails in several sizes, JPEG and WebP."},
            {"name": "service", "description": "Status, health, readiness and metrics."},
            {"name": "docs", "description": "This document and its interactive rendering."},
        ],
        "paths": paths,
        "webhooks": webhooks,
        "components": parts,
        "security": [{}, {"ApiKey": []}, {"Bearer": []}],
    })
