"""One image as the service shows it: the record (`Image`) and its public JSON shape (`image_json`).

Both the API (GET /images/<id>, every item of GET /images) and the worker (the body of a completion webhook,
"the image's JSON as GET /images/<id> returns it") answer with this one shape, so it lives below both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, overload

from apercu.imaging.gps import allowed_metadata
from apercu.storage.catalog import IN_PROGRESS, DeliveryRecord, ImageRecord, ImageStatus

if TYPE_CHECKING:  # the shape's models live with the API that publishes them; nothing of it is imported here
    from apercu.api.models import DeliveryJson, ImageJson


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
        None if metadata is None else allowed_metadata(metadata, gps), record.thumbnail,
    )


@overload
def iso(stamp: datetime) -> str: ...
@overload
def iso(stamp: datetime | None) -> str | None: ...
def iso(stamp: datetime | None) -> str | None:
    return None if stamp is None else stamp.isoformat(timespec="milliseconds") + "Z"


def image_json(image: Image) -> ImageJson:
    """The public shape of one image (`api.models.ImageJson`, checked by mypy here)."""
    self_url, thumbnail_url = f"/images/{image.id}", f"/thumbnails/{image.id}.jpg"
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
    if image.deliveries:
        body["webhooks"] = [delivery_json(d) for d in image.deliveries]
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
