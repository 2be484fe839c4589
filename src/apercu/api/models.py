"""The API's JSON answers as TypedDicts: what the routes (and `apercu.images.image_json`, which the webhooks send
too) build, checked by mypy where they build it, and what the document publishes (`api.typed_schema` turns each
`FooJson` into the component `Foo`). Why TypedDicts rather than pydantic: see `api.typed_schema`.

Statuses come from the catalog, the metadata's schema from `api.metadata_schema` (generated from the imaging
modules' tables).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, TypedDict

from apercu.api.inputs import HASH_BITS, ID_PATTERN, MAX_PAGE
from apercu.api.typed_schema import Named, Ref
from apercu.storage.catalog import DeliveryStatus, ImageStatus

URI_REFERENCE = {"type": "string", "format": "uri-reference"}
DATE_TIME = {"format": "date-time"}
STATUS = Named("Status", {
    "type": "string",
    "enum": [status.value for status in ImageStatus],
    "description": "`pending` (waiting for a worker), `processing`, then `success` or `failure` (see `error`).",
})


class ErrorDetailJson(TypedDict):
    code: Annotated[str, {"description": "Machine-readable: `not_found`, `not_ready`, `invalid_limit`, ..."}]
    message: Annotated[str, {"description": "For people."}]


class ErrorJson(TypedDict):
    """Every error, whatever the status."""

    error: ErrorDetailJson


class ImageLinksJson(TypedDict):
    self: Annotated[str, URI_REFERENCE, {"description": "`/images/{id}`"}]
    thumbnail: Annotated[str, URI_REFERENCE, {"description": "`/thumbnails/{id}.jpg`"}]


class AcceptedJson(TypedDict):
    """The upload is stored and recorded; processing happens in the background."""

    id: Annotated[str, {"pattern": ID_PATTERN}]
    status: Annotated[str, STATUS]
    links: ImageLinksJson
    duplicate: NotRequired[Annotated[bool, {
        "description": "Present (true) when the bytes were already stored (`APERCU_DEDUP=reuse`): this is the "
        "stored image, and nothing new was created."}]]


class ThumbnailJson(TypedDict):
    """The default JPEG thumbnail; present once processing succeeded."""

    width: Annotated[int, {"minimum": 1}]
    height: Annotated[int, {"minimum": 1}]
    bytes: Annotated[int, {"minimum": 1}]
    url: Annotated[str, URI_REFERENCE]


class DeliveryJson(TypedDict):
    """One completion webhook: a signed POST of the image's JSON to `url`, retried with backoff."""

    id: Annotated[str, {"description": "Sent as `X-Apercu-Delivery`, the same on every attempt."}]
    url: Annotated[str, {"format": "uri"}]
    status: Annotated[str, {
        "enum": [status.value for status in DeliveryStatus],
        "description": "`waiting` for the image to settle (a duplicate's uploader), then `pending` until "
        "`delivered`, or `failed` once given up."}]
    attempts: Annotated[int, {"minimum": 0}]
    last_status: Annotated[int | None, {"description": "The receiver's last HTTP status, if it answered."}]
    last_error: str | None
    delivered_at: Annotated[str | None, DATE_TIME]


class ImageJson(TypedDict):
    id: Annotated[str, {"pattern": ID_PATTERN}]
    status: Annotated[str, STATUS]
    filename: Annotated[str | None, {"description": "The client's name for the file (display only), if it gave one."}]
    uploaded_at: Annotated[str, DATE_TIME, {"description": "UTC."}]
    processed_at: Annotated[str | None, DATE_TIME, {"description": "UTC; null until processing has ended."}]
    error: Annotated[str | None, {"description": "Why processing failed (status `failure`), else null."}]
    links: ImageLinksJson
    metadata: NotRequired[Annotated[dict[str, Any], Ref("Metadata")]]
    thumbnail: NotRequired[ThumbnailJson]
    distance: NotRequired[Annotated[int, {
        "minimum": 0, "maximum": HASH_BITS,
        "description": "Only in `GET /images?similar_to=` results: bits of the perceptual hash that differ from the "
        "reference image's."}]]
    webhooks: NotRequired[Annotated[list[DeliveryJson], {
        "description": "Only in `GET /images/{id}`, when completion webhooks were due for this image: each delivery "
        "and how it went."}]]


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


class IndexJson(TypedDict):
    status: str
    message: str
    version: str
    endpoints: list[EndpointJson]


class HealthJson(TypedDict):
    status: Literal["ok"]


class ReadinessJson(TypedDict):
    status: Literal["ok", "unavailable"]
    checks: Annotated[dict[str, str], {
        "description": "Each dependency (`catalog`, `storage`, `broker`, `workers`): `ok`, or why not."}]
