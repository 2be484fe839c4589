"""The API's JSON answers as TypedDicts: what the routes build, checked by mypy where they build it, and what the
document publishes (`apercu.typed_schema` turns each `FooJson` into the component `Foo`). Why TypedDicts rather
than pydantic: see `apercu.typed_schema`.

An image's own shape (`ImageJson` and its parts) is `apercu.images`', below the API, because the worker's
webhooks send it too; the metadata's schema is `api.metadata_schema` (generated from the imaging modules' tables).
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired, TypedDict

from apercu.api.caller import NAME, Scope
from apercu.api.inputs import MAX_PAGE
from apercu.images import (
    ID_PATTERN,
    STATUS,
    URI_REFERENCE,
    DeliveryJson,
    ImageJson,
    ImageLinksJson,
    ThumbnailJson,
)

__all__ = ["DeliveryJson", "ImageJson", "ImageLinksJson", "ThumbnailJson"]  # the image's shape, from its module


class ErrorDetailJson(TypedDict):
    code: Annotated[str, {"description": "Machine-readable: `not_found`, `not_ready`, `invalid_limit`, ..."}]
    message: Annotated[str, {"description": "For people."}]


class ErrorJson(TypedDict):
    """Every error, whatever the status."""

    error: ErrorDetailJson


class ProblemJson(TypedDict):
    """Every error, for a client whose `Accept` prefers `application/problem+json`: RFC 9457 problem details."""

    type: Annotated[str, {"format": "uri-reference", "description": "The problem's identifier, one per `code`: "
                          "`/docs/errors#<code>`, the same on every deployment."}]
    title: Annotated[str, {"description": "The status's reason phrase."}]
    status: Annotated[int, {"description": "The HTTP status, as sent."}]
    detail: Annotated[str, {"description": "For people: what `error.message` says in the JSON error."}]
    instance: NotRequired[Annotated[str, {"format": "uri-reference", "description": "The request's path."}]]
    code: Annotated[str, {"description": "Machine-readable, as `error.code` in the JSON error: `not_found`, ..."}]


class AcceptedJson(TypedDict):
    """The upload is stored and recorded; processing happens in the background."""

    id: Annotated[str, {"pattern": ID_PATTERN}]
    status: Annotated[str, STATUS]
    links: ImageLinksJson
    duplicate: NotRequired[Annotated[bool, {
        "description": "Present (true) when the bytes were already stored (`APERCU_DEDUP=reuse`): this is the "
        "stored image, and nothing new was created."}]]


class PageLinksJson(TypedDict):
    next: NotRequired[Annotated[str, URI_REFERENCE, {"description": "The next page's URL, when there is one."}]]


class ImagePageJson(TypedDict):
    items: Annotated[list[ImageJson], {"maxItems": MAX_PAGE}]
    next_cursor: Annotated[str | None, {"description": "Pass as `?cursor=` for the next page; null on the last page."}]
    links: PageLinksJson


class EndpointJson(TypedDict):
    method: str
    path: str
    description: str


class CallerJson(TypedDict):
    """The API key this request carried, as the service knows it: what a client (the web page) needs to offer only
    what the key may do. Only ever the presented key's own identity."""

    name: Annotated[str, {"pattern": f"^{NAME.pattern}$", "description": "The key's name (`apercu keys list`)."}]
    tenant: Annotated[str, {"pattern": f"^{NAME.pattern}$", "description": "The key's tenant: its uploads are this "
                            "tenant's, and it sees only this tenant's images (`admin`: every tenant's)."}]
    scopes: Annotated[list[Scope], {"uniqueItems": True, "description":
                                    "Every scope the key holds (`admin` holds them all, so an admin key lists "
                                    "each): an operation's `security` names the one it needs."}]


class IndexJson(TypedDict):
    status: str
    message: str
    version: str
    endpoints: list[EndpointJson]
    caller: NotRequired[Annotated[CallerJson, {
        "description": "Present when the request carried a valid API key (`X-API-Key` or `Authorization: Bearer`): "
        "who it is and what it may do. Absent without one, and where the deployment has no keys (then every "
        "operation is open)."}]]


class HealthJson(TypedDict):
    status: Literal["ok"]


class WorkersJson(TypedDict):
    """The workers, as their heartbeats in the catalog tell: what processes uploads, apart from what accepts them."""

    status: Annotated[Literal["ok", "none", "unknown"], {
        "description": "`ok`: at least one worker beat lately; `none`: no worker did (uploads are accepted and kept, "
        "and wait); `unknown`: the catalog could not be asked."}]
    alive: Annotated[int | None, {"minimum": 0, "description": "Workers that beat lately (null when unknown)."}]
    message: NotRequired[Annotated[str, {"description": "Why not `ok`, for people."}]]


class ReadinessJson(TypedDict):
    status: Literal["ok", "unavailable"]
    checks: Annotated[dict[str, str], {
        "description": "Each dependency this process needs to accept and keep an upload (`catalog`, `storage`, "
        "`broker`): `ok`, or why not."}]
    workers: Annotated[WorkersJson, {"description": "The workers' state: reported, never part of `status` "
                                     "(`GET /readyz/workers` is the probe for it)."}]
