"""The web's side of a dependency's outage: a 503 that names it, and a log that says so twice, not per request.

`storage.outages.classify` says whether an exception is the blob store's, the catalog's or the broker's outage;
`errors.register` answers those 503 instead of 500 (a 500 is for our own bugs) and tells this module. Each process
keeps one `Breaker` per dependency: the first refusal logs one warning ("storage unavailable", with a short reason
and no traceback) and starts counting; while it is down, at most once per PROBE_INTERVAL a request first asks the
dependency (the readiness probe's own check) whether it is back, and when it is, one line says so with the
outage's duration and the refusals it cost. `apercu_dependency_refusals_total{dependency}` counts every refusal.
Requests are still tried while the dependency is down (the S3 client's 2 s connect timeout and the database's own
timeouts bound what each costs), so the first one after its return succeeds without waiting for a probe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flask import Flask, current_app

from apercu import metrics
from apercu.storage.outages import Dependency

log = logging.getLogger(__name__)
EXTENSION = "apercu.outages"
PROBE_INTERVAL = 1.0  # seconds between two checks of a dependency known to be down


class Breaker:
    """One dependency's outage in this process: when it began, what it has refused since, when last probed."""

    def __init__(self, dependency: Dependency, probe: Callable[[], object]) -> None:
        self.dependency = dependency
        self.probe = probe
        self.lock = threading.Lock()
        self.down_since: float | None = None
        self.refusals = 0
        self.probed = 0.0

    def refuse(self, exc: BaseException) -> None:
        """Count a request refused for this dependency's outage, logging the outage's start once."""
        metrics.DEPENDENCY_REFUSALS.labels(self.dependency).inc()
        with self.lock:
            self.refusals += 1
            first = self.down_since is None
            if first:
                self.down_since = self.probed = time.monotonic()
        if first:
            log.warning("%s unavailable (%s): refusing with 503 until it is back", self.dependency, reason(exc))

    def recheck(self) -> None:
        """While down, at most once per PROBE_INTERVAL: ask the dependency, and when it answers, say it is back."""
        with self.lock:
            now = time.monotonic()
            if self.down_since is None or now - self.probed < PROBE_INTERVAL:
                return
            self.probed = now
        try:
            self.probe()
        except Exception:  # noqa: BLE001 - still down: the next refusal is counted, nothing more to say
            return
        with self.lock:
            if self.down_since is None:
                return
            duration, refusals = time.monotonic() - self.down_since, self.refusals
            self.down_since, self.refusals = None, 0
        log.warning("%s available again after %.1f s; %d requests refused meanwhile", self.dependency, duration,
                    refusals)


def reason(exc: BaseException) -> str:
    """A short reason for the log: the exception's class and the first line of its text, cut short."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:160]


def install(app: Flask, probes: dict[Dependency, Callable[[], object]]) -> None:
    """A breaker per dependency for this app, rechecked before every request."""
    breakers = {dependency: Breaker(dependency, probe) for dependency, probe in probes.items()}
    app.extensions[EXTENSION] = breakers

    @app.before_request
    def _recheck() -> None:
        for breaker in breakers.values():
            breaker.recheck()


def refused(dependency: Dependency, exc: BaseException) -> None:
    """A request met `dependency`'s outage: the current app's breaker counts it (`errors` answers it)."""
    breakers: dict[Dependency, Breaker] = current_app.extensions[EXTENSION]
    breakers[dependency].refuse(exc)
