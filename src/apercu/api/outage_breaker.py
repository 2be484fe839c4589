"""The web's side of a dependency's outage: refused at once while it is known down, a 503 that names it, and a
log that says so twice, not per request.

`storage.outages.classify` says whether an exception is the blob store's, the catalog's or the broker's outage;
`errors.register` answers those 503 instead of 500 (a 500 is for our own bugs) and tells this module. Each process
keeps one `Breaker` per dependency: the first refusal opens it, logging one warning ("storage unavailable", with a
short reason and no traceback) and counting from then on. While it is open, a request whose operation needs that
dependency (`api.contract`'s `needs`, checked by `api.operation.route` before the view runs) is refused at once,
without touching it (`KnownDown`), so a blackholed server costs no request its connect timeout; at most once per
PROBE_INTERVAL one such request first asks the dependency (its readiness probe's own check) whether it is back,
and when it is, one line says so with the outage's duration and the refusals it cost, and that request goes on
(it pays for the probe). `/readyz` always checks, and an `ok` there closes the breaker too (`confirmed`).
`apercu_dependency_refusals_total{dependency}` counts every refusal.

A full disk (`storage.outages.out_of_space`) is answered 507 and counted, but opens no breaker: reads still work,
and space may come back with the next request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from flask import Flask, current_app

from apercu import metrics
from apercu.storage.outages import Dependency, DependencyUnavailable

log = logging.getLogger(__name__)
EXTENSION = "apercu.outages"
PROBE_INTERVAL = 1.0  # seconds between two checks of a dependency known to be down


class KnownDown(DependencyUnavailable):
    """A request refused without trying, because its dependency's breaker is open."""


class Breaker:
    """One dependency's outage in this process: when it began, what it has refused since, when last probed."""

    def __init__(self, dependency: Dependency, probe: Callable[[], object]) -> None:
        self.dependency = dependency
        self.probe = probe
        self.lock = threading.Lock()
        self.down_since: float | None = None
        self.refusals = 0  # while down: refusals since it went
        self.probed = 0.0  # when it was last found down, or last asked
        self.probing = False  # a request is asking it now

    def refuse(self, exc: BaseException) -> None:
        """Count a request refused for this dependency's outage; a failure met by trying opens the breaker, and
        logs the outage's start once."""
        metrics.DEPENDENCY_REFUSALS.labels(self.dependency).inc()
        with self.lock:
            if self.down_since is not None:
                self.refusals += 1
                return
            if isinstance(exc, KnownDown):  # closed by a probe since this request was refused: nothing opens it
                return
            self.down_since = self.probed = time.monotonic()
            self.refusals = 1
        log.warning("%s unavailable (%s): refusing with 503 until it is back", self.dependency, reason(exc))

    def admit(self) -> None:
        """Raise KnownDown while open, except for one request per PROBE_INTERVAL (counted from the end of the last
        probe, and never two at once), which asks the dependency first and goes on when it answers."""
        with self.lock:
            if self.down_since is None:
                return
            if self.probing or time.monotonic() - self.probed < PROBE_INTERVAL:
                raise KnownDown(self.dependency, "known down")
            self.probing = True
        try:
            self.probe()
        except Exception:  # noqa: BLE001 - still down: this request is refused like the others
            raise KnownDown(self.dependency, "still down") from None
        else:
            self.close()
        finally:
            with self.lock:
                self.probing, self.probed = False, time.monotonic()

    def close(self) -> None:
        """The dependency answered: if it was down, say it is back, with how long and how many refusals."""
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
    """A breaker per dependency for this app."""
    app.extensions[EXTENSION] = {dependency: Breaker(dependency, probe) for dependency, probe in probes.items()}


def _breakers() -> dict[Dependency, Breaker]:
    breakers: dict[Dependency, Breaker] = current_app.extensions[EXTENSION]
    return breakers


def admit(needs: Iterable[Dependency]) -> None:
    """Before an operation runs: KnownDown (answered 503 by `errors`) when one of the dependencies it needs is
    known down and this request is not the one that finds it back."""
    breakers = _breakers()
    for dependency in needs:
        breakers[dependency].admit()


def refused(dependency: Dependency, exc: BaseException) -> None:
    """A request met `dependency`'s outage: the current app's breaker counts it (`errors` answers it)."""
    _breakers()[dependency].refuse(exc)


def out_of_space(dependency: Dependency, exc: BaseException) -> None:
    """A request met a full disk: counted, one line without traceback, and no breaker opened."""
    metrics.DEPENDENCY_REFUSALS.labels(dependency).inc()
    log.warning("%s out of space (%s): refused with 507", dependency, reason(exc))


def confirmed(name: str) -> None:
    """The readiness probe found the dependency `name` answering: close its breaker, if it has one and was open."""
    for dependency, breaker in _breakers().items():
        if dependency == name:
            breaker.close()
