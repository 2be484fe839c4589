"""The worker registry: who is alive, for leases and readiness.

Workers record a heartbeat in `apercu_workers`, so that a lease whose worker stopped beating (or was found dead on
its own host) is taken over at once instead of when its time runs out (`dead_lease`), and the web's readiness
probe fails while no worker beats.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa

from apercu.storage.catalog.engine import Database, utcnow
from apercu.storage.catalog.tables import images, workers

# A worker that has not beaten for this long is dead: its leases are taken over, readiness fails without one.
WORKER_TIMEOUT = 20.0


class RegisteredWorker(NamedTuple):
    id: str
    pid: int


def dead_lease(now: datetime) -> sa.ColumnElement[bool]:
    """A processing lease nobody holds any more: its time ran out, or its worker is not among the live ones.

    A lease without a worker (written before workers were recorded) only ends with its time."""
    return lease_is_dead(sa.literal(now), sa.literal(now - timedelta(seconds=WORKER_TIMEOUT)))


def lease_is_dead(now: sa.ColumnElement[datetime], alive_since: sa.ColumnElement[datetime]) -> sa.ColumnElement[bool]:
    """`dead_lease` over SQL values (bound parameters, in a statement built once)."""
    live = sa.select(workers.c.id).where(workers.c.heartbeat_at >= alive_since)
    return sa.or_(
        images.c.lease_until < now,
        sa.and_(images.c.lease_worker.is_not(None), images.c.lease_worker.not_in(live)),
    )


class Workers:
    def __init__(self, db: Database) -> None:
        self._db = db

    def beat(self, worker: str, host: str, pid: int) -> None:
        """Record that this worker is alive (and register it on its first beat)."""
        now = utcnow()
        with self._db.begin() as conn:
            updated = conn.execute(workers.update().where(workers.c.id == worker).values(heartbeat_at=now)).rowcount
            if not updated:
                conn.execute(workers.insert().values(id=worker, host=host, pid=pid, started_at=now, heartbeat_at=now))

    def forget(self, worker: str) -> None:
        """A worker that stops (or is found dead): its leases become free at once."""
        with self._db.begin() as conn:
            conn.execute(workers.delete().where(workers.c.id == worker))

    def on_host(self, host: str) -> list[RegisteredWorker]:
        """The workers registered from this host, whose PIDs the caller can check."""
        with self._db.connect() as conn:
            query = sa.select(workers.c.id, workers.c.pid).where(workers.c.host == host)
            return [RegisteredWorker(r.id, r.pid) for r in conn.execute(query)]

    def forget_silent_since(self, cutoff: datetime) -> None:
        """Drop workers long dead (on hosts that never came back to forget them): the table stays small."""
        with self._db.begin() as conn:
            conn.execute(workers.delete().where(workers.c.heartbeat_at < cutoff))

    def count_live(self) -> int:
        """How many workers beat recently: zero means nothing is processing uploads."""
        cutoff = utcnow() - timedelta(seconds=WORKER_TIMEOUT)
        with self._db.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).where(workers.c.heartbeat_at >= cutoff)) or 0)
