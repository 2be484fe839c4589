"""GET /metrics: the Prometheus text format, for a scraper (see `apercu.metrics` for what it holds and how the
web's processes agree on it). Meant to be reachable without an API key, as /healthz and /readyz are: it carries
counts and timings, never an image, an id or a file name."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from apercu import metrics
from apercu.service import Service

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape() -> Response:
    service: Service = current_app.extensions["apercu"]
    catalog = service.storage.catalog
    body, content_type = metrics.exposition(metrics.CatalogCollector(catalog.images.counts, catalog.workers.count_live))
    return Response(body, content_type=content_type)
