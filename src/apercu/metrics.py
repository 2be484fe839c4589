"""Every metric apercu exports (all named `apercu_*`), and how a scrape collects them.

Counters and histograms are written where things happen: uploads and requests in the web (`api.observe`),
processing, failures and renders in the worker (`tasks.processing`), recovery in housekeeping. In a deployment
each process writes its own files (prometheus_client's multiprocess mode, directories set up by
`apercu.metrics_multiprocess` before this module is imported) and a scrape sums the files of every process on the data
directory: the web's /metrics is the same whichever gunicorn worker answers it and, under `apercu serve`,
includes the worker's counters. A worker on a machine of its own can serve its own on APERCU_METRICS_PORT
(`start_endpoint`). Image counts by status are no process's to keep: the web reads them from the catalog at
scrape time (`CatalogCollector`), so they are right whatever restarted.

The three metrics modules: this one (the metrics, and how a scrape collects them), `apercu.metrics_multiprocess`
(each process's files, set up before prometheus_client is imported) and `apercu.api.metrics_endpoint` (the web's
GET /metrics route).

Without PROMETHEUS_MULTIPROC_DIR (tests, `inspect`) the metrics live in this process's default registry.
This module imports prometheus_client and nothing of Flask or Celery, so both sides can import it.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from apercu.metrics_multiprocess import ENV
from apercu.storage.catalog import ImageStatus
from apercu.storage.outages import Dependency

log = logging.getLogger(__name__)
# Chosen by prometheus_client when it was imported, from PROMETHEUS_MULTIPROC_DIR (see apercu.metrics_multiprocess).
MULTIPROCESS = values.ValueClass is not values.MutexValue
HEADER_BYTES = 8  # a prometheus_client metrics file starts with its used length (4 bytes) and 4 of padding

# -- the web ---------------------------------------------------------------------------------------------------

UPLOADS = Counter(
    "apercu_uploads",
    "Uploads (POST /images) answered, by status code and outcome: accepted, replayed (an Idempotency-Key "
    "answered again with its first image), rejected (4xx) or failed (5xx).",
    ["status", "outcome"],
)
UPLOAD_BYTES = Counter("apercu_upload_bytes", "Request body bytes of uploads (POST /images), whatever the answer.")
REQUESTS = Counter("apercu_http_requests", "HTTP requests answered, by method, route and status code.",
                   ["method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "apercu_http_request_duration_seconds",
    "Time from a whole request to the start of its response, by method and route (receiving the body and "
    "sending the response are not included).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DEPENDENCY_REFUSALS = Counter(
    "apercu_dependency_refusals",
    "Requests answered 503 because a dependency (storage, catalog or broker) was unavailable, by dependency.",
    ["dependency"],
)
for _dependency in get_args(Dependency):  # every series from the start, so that rates work from the first one
    DEPENDENCY_REFUSALS.labels(_dependency)
IN_FLIGHT = Gauge("apercu_http_requests_in_flight", "Requests being answered by the web processes.",
                  multiprocess_mode="livesum")

# -- the worker ------------------------------------------------------------------------------------------------

PROCESSING_SECONDS = Histogram(
    "apercu_processing_seconds",
    "Processing time of an image, from its first claim to its outcome (retries after a crashed imaging process "
    "included), by format (lower case; unknown when it could not be told) and outcome (success or failure).",
    ["format", "outcome"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
FAILURE_REASONS = ("decode", "limits", "timeout", "crashed", "missing_original", "fetch", "internal")
FAILURES = Counter(
    "apercu_failures",
    "Images whose processing failed, by reason: decode (unreadable or corrupt file), limits (more pixels or "
    "memory than allowed), timeout, crashed (imaging interrupted max_attempts times), missing_original, fetch "
    "(an upload by URL whose bytes could not be had), internal (a bug: see the logged reference).",
    ["reason"],
)
RENDERS = Counter("apercu_thumbnail_renders", "Thumbnail variants (?size=N, .webp) and renditions (/r/) rendered, "
                  "by format and outcome.",
                  ["format", "outcome"])
FETCH_OUTCOMES = ("success", "refused", "http_status", "redirects", "timeout", "too_large", "not_an_image", "error")
FETCHES = Counter(
    "apercu_url_fetches",
    "Fetches of uploads by URL (POST /images with `url`) by the worker, by outcome: success, refused (an address "
    "the policy refuses), http_status, redirects (too many), timeout, too_large, not_an_image, error (the "
    "connection failed).",
    ["outcome"],
)
RESUMED = Counter("apercu_uploads_resumed", "Resumable (tus) upload requests that continued an upload: PATCHes "
                  "accepted at an offset above 0, each appending to bytes an earlier request brought.")
RESENT = Counter("apercu_recovery_resent", "Images sent to the workers again by the recovery sweep.")
for _reason in FAILURE_REASONS:  # every reason as a series from the start, so that rates work from the first one
    FAILURES.labels(_reason)
for _outcome in FETCH_OUTCOMES:
    FETCHES.labels(_outcome)

# -- the catalog, read at scrape time -----------------------------------------------------------------------------

STATUSES = tuple(ImageStatus)


class CatalogCollector:
    """`apercu_images{status}`: how many images are in each status, counted by the catalog when scraped; and with
    `workers`, `apercu_workers_alive`: how many workers beat lately (0: uploads wait; an operator's alert)."""

    def __init__(self, counts: Callable[[], dict[str, int]], workers: Callable[[], int] | None = None) -> None:
        self.counts, self.workers = counts, workers

    def collect(self) -> Iterator[Metric]:
        yield from self._images()
        if self.workers is not None:
            try:
                alive = self.workers()
            except Exception:  # noqa: BLE001 - as for the images: the other metrics still answer
                log.warning("could not count the live workers for /metrics", exc_info=True)
                return
            yield GaugeMetricFamily("apercu_workers_alive", "Workers whose heartbeat the catalog saw lately.", alive)

    def _images(self) -> Iterator[Metric]:
        try:
            counts = self.counts()
        except Exception:  # noqa: BLE001 - the other metrics still answer while the catalog does not
            log.warning("could not count the images for /metrics", exc_info=True)
            return
        family = GaugeMetricFamily("apercu_images", "Images in the catalog, by status.", labels=["status"])
        for status in sorted(set(STATUSES) | set(counts)):
            family.add_metric([status], counts.get(status, 0))
        yield family


class FilesCollector:
    """The multiprocess files matching a glob pattern, merged as prometheus_client merges one directory's."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def collect(self) -> Iterable[Metric]:
        # prometheus_client's multiprocess module is untyped:
        merged: Iterable[Metric] = MultiProcessCollector.merge(  # type: ignore[no-untyped-call, unused-ignore]
            [path for path in glob.glob(self.pattern) if _begun(path)], accumulate=True
        )
        return merged


def _begun(path: str) -> bool:
    """Whether a process's metrics file holds its header yet: another process creates the file empty and then
    sizes it, and prometheus_client cannot read it in between (a scrape in that moment answered 500; seen in CI
    while a worker started). An empty file has no values to miss; one removed meanwhile, none either."""
    try:
        return os.path.getsize(path) >= HEADER_BYTES
    except OSError:
        return False


class _Default:
    """This process's own metrics (single-process mode)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def _counted(scope: str) -> FilesCollector | _Default:
    """What a scrape sums: `all` processes writing under this data directory, or this role's `own` processes."""
    if not MULTIPROCESS:
        return _Default()
    own = Path(os.environ[ENV])
    return FilesCollector(str((own.parent / "*" if scope == "all" else own) / "*.db"))


def exposition(*extra: CatalogCollector) -> tuple[bytes, str]:
    """The body and content type of a /metrics answer: every process's metrics, and `extra` ones."""
    registry = CollectorRegistry()
    registry.register(_counted("all"))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def start_endpoint(port: int, host: str) -> None:
    """Serve this role's own metrics over HTTP in a background thread (a worker without the web beside it)."""
    registry = CollectorRegistry()
    registry.register(_counted("own"))
    start_http_server(port, addr=host, registry=registry)
    log.info("metrics on http://%s:%d/metrics", host, port)


def process_exited(pid: int) -> None:
    """A web server's worker process ended: its live gauges (requests in flight) stop counting."""
    if MULTIPROCESS:
        mark_process_dead(pid)  # type: ignore[no-untyped-call, unused-ignore]  # an untyped prometheus_client function
