"""Waiting for images to settle (`?wait=N`): one poller per process, however many requests wait.

Each waiting request used to poll the catalog on its own every few milliseconds, and that polling was a quarter
of the web processes' CPU under load. Here every waiter sleeps on one condition; a single thread, running only
while someone waits, asks the catalog every `interval` which of the waited-for images are settled (finished or
deleted) in one query, and wakes their waiters. On SQLite it first reads the database's change counter and
skips the query when nothing was committed since the last one.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter

from apercu.storage.catalog import Catalog

log = logging.getLogger(__name__)


class Watcher:
    def __init__(self, catalog: Catalog, interval: float = 0.02) -> None:
        self.catalog = catalog
        self.interval = interval
        self._cond = threading.Condition()
        self._waiting: Counter[str] = Counter()
        self._settled: set[str] = set()
        self._newcomers = False
        self._owner_pid = 0  # the process whose poller runs: a forked web worker starts its own

    def wait(self, image_id: str, timeout: float) -> bool:
        """Block until the image is settled or `timeout` seconds pass; True when it settled."""
        with self._cond:
            self._start_poller()
            self._waiting[image_id] += 1
            self._newcomers = True  # it may have settled before the poller's last look: look again
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: image_id in self._settled, timeout)
            finally:
                self._waiting[image_id] -= 1
                if not self._waiting[image_id]:
                    del self._waiting[image_id]
                    self._settled.discard(image_id)

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
        changes, seen = None, None
        while True:
            with self._cond:
                self._cond.wait_for(lambda: any(i not in self._settled for i in self._waiting))
                pending = [i for i in self._waiting if i not in self._settled]
                look, self._newcomers = self._newcomers, False
            try:
                changes = changes or self.catalog.change_counter()
                counter = changes() if changes else None
                if look or counter is None or counter != seen:
                    settled, seen = self.catalog.settled_among(pending), counter
                else:
                    settled = set()
            except Exception:  # noqa: BLE001 - a database hiccup: the waiters time out or the next poll answers
                log.warning("polling the catalog for settled images failed", exc_info=True)
                changes, seen, settled = None, None, set()  # reconnect, and query next time
            if settled:
                with self._cond:
                    self._settled |= settled
                    self._cond.notify_all()
            threading.Event().wait(self.interval)
