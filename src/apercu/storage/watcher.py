"""Waiting (`?wait=N`) for an image to settle or a thumbnail variant's render to end: one poller per process,
however many requests wait, for whatever.

Each waiting request used to poll the catalog on its own every few milliseconds, and that polling was a quarter
of the web processes' CPU under load. Here every waiter sleeps on one condition; a single thread, running only
while someone waits, listens to the catalog's change feed (`storage.change_feed`: PostgreSQL's notifications,
SQLite's change counter) for up to `interval` at a time, and wakes the waiters of the names it announces (image
ids, renders' blob keys). It queries the catalog (`catalog.settling`: one query for all the waited-for names) only
when the feed cannot name what changed, when new waiters arrive (theirs may have settled before they started
waiting), and every `recheck` seconds in any case, so that a missed notification costs at most that much delay.
"""

from __future__ import annotations

import logging
import os
import threading
import time

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
        self._newcomers = False
        self._owner_pid = 0  # the process whose poller runs: a forked web worker starts its own

    def wait(self, name: str, timeout: float) -> bool:
        """Block until `name` settled (an image's id: processed or deleted; a render's blob key: stored or failed,
        or its image deleted) or `timeout` seconds pass; True when it settled."""
        settled = threading.Event()
        with self._lock:
            self._start_poller()
            self._waiting.setdefault(name, []).append(settled)
            self._newcomers = True  # it may have settled before the poller's last look: look again
            self._someone.notify()
        try:
            return settled.wait(timeout)
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
        checked = 0.0
        while True:
            with self._lock:
                self._someone.wait_for(lambda: bool(self._waiting))
                look, self._newcomers = self._newcomers, False
            try:
                feed = feed or self.catalog.settling.change_feed()
                announced = feed.poll(0 if look else self.interval)
                with self._lock:  # who waits now: a newcomer during the poll is looked for in this round
                    pending, look, self._newcomers = list(self._waiting), look or self._newcomers, False
                if look or announced is None or time.monotonic() - checked > self.recheck:
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

    def _wake(self, settled: set[str]) -> None:
        """Wake the waiters of these names, and forget the names (a later waiter of one looks for itself)."""
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
