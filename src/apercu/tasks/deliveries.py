"""Completion webhooks of settled images: each delivery attempted, retried with exponential backoff, and ended
as `delivered` or `failed`, its record saying how it went (shown in the image's JSON).

At least once: the rows are written in the transaction that settles the image (`Catalog._settle`), sent right
after by the task that processed it, and sent again by the recovery sweep when their message was lost; a
receiver tells repeats apart by `X-Apercu-Delivery`. Delivery never holds up processing: it is a task of its own.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from celery import Celery

from apercu.images import image_json, shown
from apercu.storage.catalog import DELIVERED, DELIVERY_FAILED, DELIVERY_PENDING, Catalog, utcnow
from apercu.tasks import webhooks
from apercu.tasks.processing import Processor

DELIVER_TASK = "apercu.deliver_webhook"
log = logging.getLogger(__name__)


class Deliveries:
    def __init__(self, processor: Processor) -> None:
        self.processor = processor

    def attempt(self, delivery_id: str) -> float | None:
        """One attempt; returns in how many seconds to try again, or None when the delivery has ended."""
        catalog, settings = self.processor.storage.catalog, self.processor.settings
        delivery = catalog.delivery(delivery_id)
        if delivery is None or delivery["status"] != DELIVERY_PENDING:
            return None  # the image was deleted, or a repeated message of a delivery that already ended
        row = catalog.get(delivery["image_id"])
        if row is None:
            catalog.record_delivery(delivery_id, DELIVERY_FAILED, None, "the image was deleted")
            return None
        image = shown(row, settings.gps)  # without `webhooks`: a receiver is not told of the others
        body = json.dumps(image_json(image), allow_nan=False).encode()
        try:
            answer = webhooks.deliver(
                webhooks.resolve(delivery["url"], settings.webhook_allowed_hosts), body, settings.webhook_secret,
                delivery_id,
            )
        except webhooks.Refused as exc:
            catalog.record_delivery(delivery_id, DELIVERY_FAILED, None, f"refused: {exc}")
            return None
        except Exception as exc:  # noqa: BLE001 - no connection, a timeout, a malformed answer: an attempt that failed
            status, error = None, f"{type(exc).__name__}: {exc}"[:300]
        else:
            if answer.ok:
                catalog.record_delivery(delivery_id, DELIVERED, answer.status, None)
                return None
            status, error = answer.status, f"HTTP {answer.status}: {answer.excerpt[:100]}".rstrip(": ")
        return self._failed_attempt(delivery_id, delivery["attempts"] + 1, status, error)

    def _failed_attempt(self, delivery_id: str, attempts: int, status: int | None, error: str) -> float | None:
        settings, catalog = self.processor.settings, self.processor.storage.catalog
        if attempts >= settings.webhook_attempts:
            catalog.record_delivery(delivery_id, DELIVERY_FAILED, status, f"gave up after {attempts} attempts: {error}")
            return None
        retry_in = settings.webhook_backoff * 2 ** (attempts - 1)
        catalog.record_delivery(delivery_id, DELIVERY_PENDING, status, error, retry_in)
        log.info("webhook %s: attempt %d failed (%r); again in %g s", delivery_id, attempts, error, retry_in)
        return retry_in


def send_due(app: Celery, catalog: Catalog, image_id: str | None = None, overdue_for: float = 0.0) -> int:
    """Queue the deliveries that are due: one image's, just settled, or any overdue by `overdue_for` seconds
    (their message was lost). Returns how many were queued."""
    ids = catalog.deliveries_due(utcnow() - timedelta(seconds=overdue_for), image_id)
    for delivery_id in ids:
        app.send_task(DELIVER_TASK, args=[delivery_id], queue=app.conf.task_default_queue)
    return len(ids)
