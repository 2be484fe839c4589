"""Waiting (`?wait=N`) for an image to settle or a thumbnail variant's render to end: one poller per process,
however many requests wait, for whatever.

Each waiting request used to poll the catalog on its own every few milliseconds, and that polling was a quarter
of the web processes' CPU under load. Here every waiter sleeps on one condition; a single thread, running only
while someone waits, listens to the catalog's change feed (`storage.change_feed`: PostgreSQL's notifications,
SQLite's change counter) for up to `interval` at a time, and wakes the waiters of the names it announces (image
ids, renders' blob keys). It queries the catalog (`catalog.settling`: one query for all the waited-for names) only
when the feed cannot name what changed, when new waiters arrive (theirs may have settled before they started
waiting), and every `recheck` seconds in any case, so that a missed notification costs at most that much delay.

Each name's waiters sleep on an event of that name, and only the poller on the condition: with one condition
for all, every newcomer's wake-up of the poller and every settled name woke every waiting request of the process
as well, to look and sleep again (8 clients, 2 web processes: a few wake-ups per image per process).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from apercu.storage.catalog import Catalog
from apercu.storage.change_feed import ChangeFeed

log = logging.getLogger(__name__)


@dataclass
class _Waiters:
    """The requests waiting for one name: how many, and what wakes them all when it settled."""

    count: int = 0
    settled: threading.Event = field(default_factory=threading.Event)


class Watcher:
    def __init__(self, catalog: Catalog, interval: float = 0.02, recheck: float = 1.0) -> None:
        self.catalog = catalog
        self.interval = interval
        self.recheck = recheck
        self._cond = threading.Condition()  # the poller's alone; guards `_waiting` and `_newcomers`
        self._waiting: dict[str, _Waiters] = {}
        self._newcomers = False
        self._owner_pid = 0  # the process whose poller runs: a forked web worker starts its own

    def wait(self, name: str, timeout: float) -> bool:
        """Block until `name` settled (an image's id: processed or deleted; a render's blob key: stored or failed,
        or its image deleted) or `timeout` seconds pass; True when it settled."""
        with self._cond:
            self._start_poller()
            waiters = self._waiting.setdefault(name, _Waiters())
            waiters.count += 1
            self._newcomers = True  # it may have settled before the poller's last look: look again
            self._cond.notify()
        try:
            return waiters.settled.wait(timeout)
        finally:
            with self._cond:
                waiters.count -= 1
                if not waiters.count:
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
            with self._cond:
                self._cond.wait_for(lambda: any(not w.settled.is_set() for w in self._waiting.values()))
                pending = [n for n, w in self._waiting.items() if not w.settled.is_set()]
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
                    for name in settled & self._waiting.keys():
                        self._waiting[name].settled.set()


def _close(feed: ChangeFeed | None) -> None:
    """Drop a feed after an error (the next poll opens a new one)."""
    if feed is not None:
        try:
            feed.close()
        except Exception:  # noqa: BLE001 - its connection is broken already
            log.debug("closing a broken change feed failed", exc_info=True)
