"""One image as the service shows it: the record (`Image`) and its public JSON shape (`image_json`).

Both the API (GET /images/<id>, every item of GET /images) and the worker (the body of a completion webhook,
"the image's JSON as GET /images/<id> returns it") answer with this one shape, so it lives below both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, NotRequired, TypedDict, overload

from apercu.imaging.fingerprints import PHASH_BITS
from apercu.imaging.gps import allowed_metadata
from apercu.storage.catalog import (
    DEFAULT_TENANT,
    IN_PROGRESS,
    DeliveryRecord,
    DeliveryStatus,
    ImageRecord,
    ImageStatus,
)
from apercu.typed_schema import Named, Ref

ID_PATTERN = "^[0-9a-f]{32}$"  # an image id: a UUID4's 32 lower-case hex digits (`service.Service.submit`)
URI_REFERENCE = {"type": "string", "format": "uri-reference"}
DATE_TIME = {"format": "date-time"}
STATUS = Named("Status", {
    "type": "string",
    "enum": [status.value for status in ImageStatus],
    "description": "`pending` (waiting for a worker), `processing`, then `success` or `failure` (see `error`).",
})


# The public JSON shape, as TypedDicts that the OpenAPI document publishes (see `apercu.typed_schema`).


class ImageLinksJson(TypedDict):
    self: Annotated[str, URI_REFERENCE, {"description": "`/images/{id}`"}]
    thumbnail: Annotated[str, URI_REFERENCE, {"description": "`/thumbnails/{id}.jpg`"}]


class ThumbnailJson(TypedDict):
    """The default JPEG thumbnail; present once processing succeeded."""

    width: Annotated[int, {"minimum": 1}]
    height: Annotated[int, {"minimum": 1}]
    bytes: Annotated[int, {"minimum": 1}]
    url: Annotated[str, URI_REFERENCE]


class DeliveryJson(TypedDict):
    """One completion webhook: a signed POST of the image's JSON to `url`, retried with backoff."""

    id: Annotated[str, {"description": "Sent as `webhook-id` (Standard Webhooks), the same on every attempt."}]
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
        "minimum": 0, "maximum": PHASH_BITS,
        "description": "Only in `GET /images?similar_to=` results: bits of the perceptual hash that differ from the "
        "reference image's."}]]
    renditions: NotRequired[Annotated[dict[str, str], {
        "description": "A signed rendition URL (`/r/{signature}/p:{name}/{id}.auto`) per preset of `APERCU_PRESETS`, "
        "by the preset's name; absent when none is configured, or no URL can be signed (API keys required and no "
        "`APERCU_URL_KEY`)."}]]
    views: NotRequired[Annotated[dict[str, dict[str, str]], {
        "description": "The signed `auto` rendition URLs the web page shows, by view (`tile`: "
        "`w:256/h:256/fit:cover`, `preview`: `w:1200`) and density (`1x`, `2x`: `dpr:1`, `dpr:2`), for an "
        "`<img srcset>`; absent when no URL can be signed (API keys required and no `APERCU_URL_KEY`)."}]]
    webhooks: NotRequired[Annotated[list[DeliveryJson], {
        "description": "Only in `GET /images/{id}`, when completion webhooks were due for this image: each delivery "
        "and how it went."}]]
    source_url: NotRequired[Annotated[str, {
        "description": "Only for an upload by URL (`POST /images` with `url`): the URL its original was fetched "
        "from."}]]
    tenant: NotRequired[Annotated[str, {
        "description": "Only to an `admin` key (which sees every tenant's images): the tenant the image belongs to, "
        "its uploading key's."}]]


@dataclass(frozen=True)
class Image:
    """One image as the service shows it; `deliveries` only where they were looked up (one image's GET)."""

    id: str
    status: ImageStatus
    filename: str | None
    uploaded_at: datetime
    processed_at: datetime | None
    error: str | None
    metadata: dict[str, Any] | None
    thumbnail: dict[str, Any] | None
    deliveries: tuple[DeliveryRecord, ...] = ()
    renditions: dict[str, str] = field(default_factory=dict)  # a signed URL by preset name (`rendition_urls`)
    views: dict[str, dict[str, str]] = field(default_factory=dict)  # the page's, by view and density (ditto)
    tenant: str = DEFAULT_TENANT  # whose it is (its uploading key's tenant)
    source_url: str | None = None  # an upload by URL's

    @property
    def settled(self) -> bool:
        return self.status not in IN_PROGRESS


def client_view(record: ImageRecord, gps: str) -> Image:
    """A catalog record as the service shows it to its clients (the API, a webhook's body): its metadata as
    APERCU_GPS allows, whatever it was stored with (the worker drops a location before storing, but an image
    processed before the setting changed still has it)."""
    metadata = record.image_metadata
    return Image(
        record.id, record.status, record.filename, record.uploaded_at, record.processed_at, record.error,
        None if metadata is None else allowed_metadata(metadata, gps), record.thumbnail, tenant=record.tenant,
        source_url=record.source_url,
    )


@overload
def iso(stamp: datetime) -> str: ...
@overload
def iso(stamp: datetime | None) -> str | None: ...
def iso(stamp: datetime | None) -> str | None:
    return None if stamp is None else stamp.isoformat(timespec="milliseconds") + "Z"


def image_json(image: Image, with_tenant: bool = False, root: str = "") -> ImageJson:
    """The public shape of one image (`api.models.ImageJson`, checked by mypy here); its tenant only `with_tenant`
    (an admin's answer: a tenant's own clients need not learn the operator's name for them, and a webhook's body,
    sent to whatever URL an uploader gave, says no more than their GET). `root` goes before every URL path: the
    prefix a reverse proxy serves the API under (`api.forwarded`)."""
    self_url, thumbnail_url = f"{root}/images/{image.id}", f"{root}/thumbnails/{image.id}.jpg"
    body: ImageJson = {
        "id": image.id,
        "status": image.status,
        "filename": image.filename,
        "uploaded_at": iso(image.uploaded_at),
        "processed_at": iso(image.processed_at),
        "error": image.error,
        "links": {"self": self_url, "thumbnail": thumbnail_url},
    }
    if image.metadata is not None:
        body["metadata"] = image.metadata
    if image.thumbnail is not None:
        thumb = image.thumbnail
        body["thumbnail"] = {"width": thumb["width"], "height": thumb["height"], "bytes": thumb["bytes"],
                             "url": thumbnail_url}
    if image.renditions:
        body["renditions"] = {name: root + url for name, url in image.renditions.items()}
    if image.views:
        body["views"] = {view: {density: root + url for density, url in urls.items()}
                         for view, urls in image.views.items()}
    if image.deliveries:
        body["webhooks"] = [delivery_json(d) for d in image.deliveries]
    if image.source_url is not None:
        body["source_url"] = image.source_url
    if with_tenant:
        body["tenant"] = image.tenant
    return body


def delivery_json(delivery: DeliveryRecord) -> DeliveryJson:
    """One completion webhook's delivery: where to, and how it went so far."""
    return {
        "id": delivery.id,
        "url": delivery.url,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "delivered_at": iso(delivery.delivered_at),
    }
