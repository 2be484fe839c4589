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
from collections import Counter

from apercu.storage.catalog import Catalog
from apercu.storage.change_feed import ChangeFeed

log = logging.getLogger(__name__)


class Watcher:
    def __init__(self, catalog: Catalog, interval: float = 0.02, recheck: float = 1.0) -> None:
        self.catalog = catalog
        self.interval = interval
        self.recheck = recheck
        self._cond = threading.Condition()
        self._waiting: Counter[str] = Counter()
        self._settled: set[str] = set()
        self._newcomers = False
        self._owner_pid = 0  # the process whose poller runs: a forked web worker starts its own

    def wait(self, name: str, timeout: float) -> bool:
        """Block until `name` settled (an image's id: processed or deleted; a render's blob key: stored or failed,
        or its image deleted) or `timeout` seconds pass; True when it settled."""
        with self._cond:
            self._start_poller()
            self._waiting[name] += 1
            self._newcomers = True  # it may have settled before the poller's last look: look again
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: name in self._settled, timeout)
            finally:
                self._waiting[name] -= 1
                if not self._waiting[name]:
                    del self._waiting[name]
                    self._settled.discard(name)

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
            with self._cond:
                self._cond.wait_for(lambda: any(n not in self._settled for n in self._waiting))
                pending = [n for n in self._waiting if n not in self._settled]
                look, self._newcomers = self._newcomers, False
            try:
                feed = feed or self.catalog.settling.change_feed()
                announced = feed.poll(0 if look else self.interval)
                if look or announced is None or time.monotonic() - checked > self.recheck:
                    settled, checked = self.catalog.settling.settled_among(pending), time.monotonic()
                else:
                    settled = announced.intersection(pending)
            except Exception:  # noqa: BLE001 - a database hiccup: the waiters time out or the next poll answers
                log.warning("polling the catalog for what settled failed", exc_info=True)
                _close(feed)
                feed, settled = None, set()
                threading.Event().wait(self.interval)
            if settled:
                with self._cond:
                    self._settled |= settled
                    self._cond.notify_all()


def _close(feed: ChangeFeed | None) -> None:
    """Drop a feed after an error (the next poll opens a new one)."""
    if feed is not None:
        try:
            feed.close()
        except Exception:  # noqa: BLE001 - its connection is broken already
            log.debug("closing a broken change feed failed", exc_info=True)
