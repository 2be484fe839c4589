"""Completion webhooks of settled images: each delivery attempted, retried with exponential backoff, and ended
as `delivered` or `failed`, its record saying how it went (shown in the image's JSON).

The body is a Standard Webhooks payload with its data squashed into the top level (which the spec allows): the
event's `type` (`image.succeeded`, `image.failed`) and `timestamp` (when the image settled), beside the image's
JSON as `GET /images/<id>` shows it, as the body always was, so that receivers reading the image fields keep
working.

At least once: the rows are written in the transaction that settles the image (`catalog.leases`), sent right
after by the task that processed it, and sent again by the recovery sweep when their message was lost; a
receiver tells repeats apart by `webhook-id`. Delivery never holds up processing: it is a task of its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Literal

from celery import Celery

from apercu import outbound as addresses
from apercu.config import Settings, webhook_key
from apercu.images import DATE_TIME, Image, ImageJson, client_view, image_json, iso
from apercu.storage.catalog import Catalog, DeliveryStatus, ImageStatus, utcnow
from apercu.webhooks import transport

DELIVER_TASK = "apercu.deliver_webhook"  # the worker's task that makes one attempt (`tasks.app`)
Post = Callable[[addresses.Target, bytes, bytes, str], transport.Answer]  # (target, body, key, delivery id)
EventType = Literal["image.succeeded", "image.failed"]
# A body's `type`, by the status the image settled in (a delivery is due only once it has settled).
EVENT_TYPES: dict[ImageStatus, EventType] = {
    ImageStatus.SUCCESS: "image.succeeded", ImageStatus.FAILURE: "image.failed"}
log = logging.getLogger(__name__)


class ImageEventJson(ImageJson):
    """A completion webhook's body: a Standard Webhooks payload whose data, the image as `GET /images/{id}` shows
    it (without `webhooks`), is in the top level beside the event's type and time."""

    type: Annotated[EventType, {"description": "`image.succeeded` (status `success`) or `image.failed` (`failure`)."}]
    timestamp: Annotated[str, DATE_TIME, {"description": "When the image settled (its `processed_at`), UTC; the "
                                          "same on every attempt, unlike the `webhook-timestamp` header."}]


class Deliveries:
    """The attempts of deliveries, each on its own (a task each): what was sent, and what is left to try."""

    def __init__(self, settings: Settings, catalog: Catalog, post: Post = transport.post) -> None:
        self.settings, self.catalog, self.post = settings, catalog, post

    def attempt(self, delivery_id: str) -> float | None:
        """One attempt; returns in how many seconds to try again, or None when the delivery has ended."""
        catalog, settings = self.catalog, self.settings
        delivery = catalog.deliveries.get(delivery_id)
        if delivery is None or delivery.status is not DeliveryStatus.PENDING:
            return None  # the image was deleted, or a repeated message of a delivery that already ended
        record = catalog.images.get(delivery.image_id)
        if record is None:
            catalog.deliveries.record_attempt(delivery_id, DeliveryStatus.FAILED, None, "the image was deleted")
            return None
        body = payload(client_view(record, settings.gps))  # without `webhooks`: a receiver is not told of the others
        try:
            target = addresses.resolve(delivery.url, settings.webhook_allowed_hosts)
            answer = self.post(target, body, webhook_key(settings.webhook_secret), delivery_id)
        except addresses.Refused as exc:
            catalog.deliveries.record_attempt(delivery_id, DeliveryStatus.FAILED, None, f"refused: {exc}")
            return None
        except Exception as exc:  # noqa: BLE001 - no connection, a timeout, a malformed answer: an attempt that failed
            status, error = None, f"{type(exc).__name__}: {exc}"[:300]
        else:
            if answer.ok:
                catalog.deliveries.record_attempt(delivery_id, DeliveryStatus.DELIVERED, answer.status, None)
                return None
            status, error = answer.status, f"HTTP {answer.status}: {answer.excerpt[:100]}".rstrip(": ")
        return self._failed_attempt(delivery_id, delivery.attempts + 1, status, error)

    def _failed_attempt(self, delivery_id: str, attempts: int, status: int | None, error: str) -> float | None:
        settings, catalog = self.settings, self.catalog
        if attempts >= settings.webhook_attempts:
            catalog.deliveries.record_attempt(
                delivery_id, DeliveryStatus.FAILED, status, f"gave up after {attempts} attempts: {error}")
            return None
        retry_in = settings.webhook_backoff * 2.0 ** (attempts - 1)
        catalog.deliveries.record_attempt(delivery_id, DeliveryStatus.PENDING, status, error, retry_in)
        log.info("webhook %s: attempt %d failed (%r); again in %g s", delivery_id, attempts, error, retry_in)
        return retry_in


def payload(image: Image) -> bytes:
    """The body of a settled image's webhook: its event type and time, then the image's JSON (see above)."""
    settled = iso(image.processed_at or utcnow())  # (settling sets processed_at: `or` only narrows the type)
    body: ImageEventJson = {"type": EVENT_TYPES[image.status], "timestamp": settled, **image_json(image)}
    return json.dumps(body, allow_nan=False).encode()


def send_due(app: Celery, catalog: Catalog, image_id: str | None = None, overdue_for: float = 0.0) -> int:
    """Queue the deliveries that are due: one image's, just settled, or any overdue by `overdue_for` seconds
    (their message was lost). Returns how many were queued. When the broker refuses one, it and the rest are
    marked unsent (the next recovery sweep sends them) before the error is raised."""
    ids = catalog.deliveries.take_due(utcnow() - timedelta(seconds=overdue_for), image_id)
    for sent, delivery_id in enumerate(ids):
        try:
            app.send_task(DELIVER_TASK, args=[delivery_id], queue=app.conf.task_default_queue)
        except Exception:
            catalog.deliveries.mark_unsent(ids[sent:])
            raise
    return len(ids)
