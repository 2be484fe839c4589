"""Waiting (`?wait=N`) for an image to settle or a thumbnail variant's render to end: one poller per process,
however many requests wait, for whatever.

Each waiting request used to poll the catalog on its own every few milliseconds, and that polling was a quarter
of the web processes' CPU under load. Here every waiter sleeps on an event of its own; a single thread, running
only while someone waits, listens to the catalog's change feed (`storage.change_feed`: PostgreSQL's
notifications, SQLite's settle bell), asleep until it rings (or polls it every `interval` where it cannot ring),
and wakes the waiters of the names it announces or that a look finds settled (image ids, renders' blob keys). It
queries the catalog (`catalog.settling`: one query for all the waited-for names) only when the feed cannot name
what changed, once when it opens a feed, and every `recheck` seconds in any case, so that a missed notification
costs at most that much delay. A waiter reads what it waits for itself once it is watching (`watching`): what
settled before that, no feed would tell.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

from apercu.storage.catalog import Catalog
from apercu.storage.change_feed import ChangeFeed

log = logging.getLogger(__name__)


class Watcher:
    def __init__(self, catalog: Catalog, interval: float = 0.02, recheck: float = 1.0) -> None:
        self.catalog = catalog
        self.interval = interval
        self.recheck = recheck
        self._lock = threading.Lock()
        self._someone = threading.Condition(self._lock)  # the poller sleeps on it while nobody waits
        # Each waiter's own event, by name: a settled name wakes its waiters alone (one condition for all woke
        # every waiting request thread at each settle, to find that it was someone else's).
        self._waiting: dict[str, list[threading.Event]] = {}
        self._owner_pid = 0  # the process whose poller runs: a forked web worker starts its own
        self._asleep = False  # the poller sleeps on `_someone`: a newcomer must wake it

    @contextlib.contextmanager
    def watching(self, name: str) -> Iterator[Callable[[float], bool]]:
        """Watch `name` (an image's id: processed or deleted; a render's blob key: stored or failed, or its image
        deleted) for the block, which gets `settled(timeout)`: True once it settled, False after `timeout`
        seconds. What settles from the moment the block starts wakes it; what settled before, the block must
        read for itself, after it started (the poller looks for no newcomer, so that it can sleep until the
        feed rings: a look per waiter, and a wake-up every `interval` to make it, were a third of its cost)."""
        settled = threading.Event()
        with self._lock:
            self._start_poller()
            self._waiting.setdefault(name, []).append(settled)
            if self._asleep:  # (a wake-up of the poller cost a rendition's first request a tenth of its web CPU)
                self._someone.notify()
        try:
            yield settled.wait
        finally:
            with self._lock:
                events = self._waiting.get(name, [])
                if settled in events:  # (not when the poller took them, to wake them)
                    events.remove(settled)
                    if not events:
                        del self._waiting[name]

    def _start_poller(self) -> None:
        if self._owner_pid != os.getpid():
            self._owner_pid = os.getpid()
            threading.Thread(target=self._poll, name="apercu-watcher", daemon=True).start()

    def _poll(self) -> None:
        try:
            self._poll_forever()
        finally:
            self._owner_pid = 0  # the next waiter starts a new poller

    def _poll_forever(self) -> None:
        feed: ChangeFeed | None = None
        checked = busy = 0.0
        while True:
            self._sleep_while_nobody_waits(feed, busy)
            try:
                if feed is None:  # a look first: what settled before the feed listened was not announced to it
                    feed, announced = self.catalog.settling.change_feed(), None
                else:
                    announced = feed.poll(self._timeout(feed, checked, busy))
                with self._lock:  # who waits now: whoever came during the poll is looked for too
                    pending = list(self._waiting)
                if not pending:
                    continue
                busy = time.monotonic()
                if announced is None or time.monotonic() - checked >= self.recheck:
                    settled, checked = self.catalog.settling.settled_among(pending), time.monotonic()
                else:
                    settled = announced.intersection(pending)
            except Exception:  # noqa: BLE001 - a database hiccup: the waiters time out or the next poll answers
                log.warning("polling the catalog for what settled failed", exc_info=True)
                _close(feed)
                feed, settled = None, set()
                time.sleep(self.interval)
            if settled:
                self._wake(settled)

    def _sleep_while_nobody_waits(self, feed: ChangeFeed | None, busy: float) -> None:
        """Sleep until someone waits; but a feed that is told of what settles is listened to on for `recheck`
        seconds after the last waiter left, so that the next one (a rendition's first request comes every few
        ms under load) need not wake the poller."""
        with self._lock:
            if self._waiting or (feed is not None and feed.told and time.monotonic() - busy < self.recheck):
                return
            self._asleep = True
            self._someone.wait_for(lambda: bool(self._waiting))
            self._asleep = False

    def _timeout(self, feed: ChangeFeed, checked: float, busy: float) -> float:
        """How long a poll of the feed may sleep: a feed that is told of what settles, until the next `recheck`
        look (the safety net for a missed notification), or while nobody waits, until it stops listening; one
        that must be asked, `interval`."""
        if not feed.told:
            return self.interval
        return max(0.0, (checked if self._waiting else busy) + self.recheck - time.monotonic())

    def _wake(self, settled: set[str]) -> None:
        """Wake the waiters of these names, and forget the names (a later waiter of one reads it for itself)."""
        with self._lock:
            for name in settled:
                for event in self._waiting.pop(name, ()):
                    event.set()


def _close(feed: ChangeFeed | None) -> None:
    """Drop a feed after an error (the next poll opens a new one)."""
    if feed is not None:
        try:
            feed.close()
        except Exception:  # noqa: BLE001 - its connection is broken already
            log.debug("closing a broken change feed failed", exc_info=True)
