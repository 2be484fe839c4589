"""What became of an image's processing, or of a render: counted (`apercu.metrics`) and logged, one line each.

Kept apart from `tasks.processing` so that the rules of processing read without the bookkeeping: processing
says what happened (`Outcome`), this module says it to the operators. A failure's reason is a small stable
class (`metrics.FAILURE_REASONS`) decided by where processing failed, never by the wording of the message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from apercu import metrics
from apercu.imaging.analyse import ProcessingFailed
from apercu.imaging.formats import FORMATS
from apercu.logs import current_request_id
from apercu.storage.catalog import ImageStatus
from apercu.tasks.jobs import RenderJob
from apercu.tasks.sandbox import TimeLimitExceeded

log = logging.getLogger("apercu.processing")
KNOWN_FORMATS = frozenset(f.name.lower() for f in FORMATS)
LINE = "image %(image_id)s (%(format)s): %(outcome)s"  # then " (reason)", " in N ms" when known
RENDER_LINE = "image %(image_id)s: %(kind)s %(label)s %(outcome)s"


@dataclass(frozen=True)
class Outcome:
    """How one image's processing ended."""

    status: ImageStatus  # SUCCESS or FAILURE: the image's status it ends in
    format: str = "unknown"  # lower case, one of KNOWN_FORMATS, or unknown / other
    reason: str | None = None  # a failure's class, one of metrics.FAILURE_REASONS


def succeeded(metadata: dict[str, Any]) -> Outcome:
    return Outcome(ImageStatus.SUCCESS, format_of(metadata))


def failed(reason: str, metadata: dict[str, Any] | None = None) -> Outcome:
    return Outcome(ImageStatus.FAILURE, format_of(metadata), reason)


def failed_with(exc: ProcessingFailed | TimeLimitExceeded) -> Outcome:
    """The file's own failure, or the time limit."""
    if isinstance(exc, TimeLimitExceeded):
        return failed("timeout")
    return failed(exc.reason, exc.metadata)


def format_of(metadata: dict[str, Any] | None) -> str:
    """The format as a metric label: bounded whatever a file's header claimed."""
    name = str((metadata or {}).get("format") or "unknown").lower()
    return name if name in KNOWN_FORMATS or name == "unknown" else "other"


def report(image_id: str, outcome: Outcome, seconds: float | None) -> None:
    """Count and log an image's outcome (`seconds` None: its processing time is unknown, so not observed).
    Metrics that cannot be written (a full disk) are logged and skipped: the image's outcome stands."""
    try:
        if seconds is not None:
            metrics.PROCESSING_SECONDS.labels(outcome.format, outcome.status).observe(seconds)
        if outcome.reason is not None:
            metrics.FAILURES.labels(outcome.reason).inc()
    except Exception:  # noqa: BLE001 - see above
        log.warning("could not count the outcome of image %s", image_id, exc_info=True)
    fields = {
        "image_id": image_id,
        "format": outcome.format,
        "outcome": outcome.status,
        "reason": outcome.reason,
        "duration_ms": round(seconds * 1000, 1) if seconds is not None else None,
        "request_id": current_request_id(),
    }
    because = " (%(reason)s)" if outcome.reason else ""
    log.info(LINE + because + (" in %(duration_ms).1f ms" if seconds is not None else ""), fields)


def report_fetch(outcome: str) -> None:
    """Count an upload by URL's fetch by outcome (one of metrics.FETCH_OUTCOMES), as `report` counts."""
    try:
        metrics.FETCHES.labels(outcome).inc()
    except Exception:  # noqa: BLE001 - as in `report`
        log.warning("could not count a fetch", exc_info=True)


def report_render(job: RenderJob, outcome: str) -> None:
    try:
        metrics.RENDERS.labels(job.ext, outcome).inc()
    except Exception:  # noqa: BLE001 - as in `report`
        log.warning("could not count a render of image %s", job.image_id, exc_info=True)
    log.info(RENDER_LINE, {
        "image_id": job.image_id, "kind": job.kind, "label": job.label, "outcome": outcome,
        "request_id": current_request_id(),
    })
