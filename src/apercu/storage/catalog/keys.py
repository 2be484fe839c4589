"""API keys kept in the catalog (`apercu keys create | list | revoke`): each key's name, tenant and scopes, and the
SHA-256 of the key, never the key itself, so that neither the catalog nor its backups hold a usable secret.

Every web process compares requests' keys with these, and must stop accepting a revoked one within seconds on every
machine, without reading the table on every request: `Keys.snapshot` keeps the active keys in memory and, at most
every RELOAD_EVERY seconds, asks the catalog for the table's version, (rows, revoked rows), reading the keys again
only when it changed. Rows are never deleted and a revocation is never undone, so that pair only grows: any
create or revoke changes it, whichever machine's clock stamped the row.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from apercu.storage.catalog.engine import Database, utcnow
from apercu.storage.catalog.tables import api_keys

RELOAD_EVERY = 2.0  # seconds: how long a revoked key may still be accepted by a web process
log = logging.getLogger(__name__)


class KeyNameTaken(ValueError):
    """A key of this name exists (revoked ones too: a name identifies one key forever, in logs and limits)."""


@dataclass(frozen=True)
class KeyRecord:
    """A key as `apercu keys list` shows it: everything but the key."""

    name: str
    tenant: str
    scopes: tuple[str, ...]
    sha256: str  # hex digest of the key
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class KeySnapshot:
    """The catalog's keys as one web process last read them."""

    version: tuple[int, int]  # (rows, revoked rows)
    active: tuple[KeyRecord, ...] = field(default=())

    @property
    def any(self) -> bool:
        """Whether the catalog ever held a key (revoked ones count: revoking the last key must not open the API)."""
        return self.version[0] > 0


class Keys:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._snapshot: KeySnapshot | None = None
        self._checked = 0.0  # time.monotonic() of the last version check
        self._refreshing = threading.Lock()

    def create(self, name: str, tenant: str, scopes: tuple[str, ...], sha256: str) -> None:
        """Record a new key by its digest; KeyNameTaken when the name is."""
        row = {"name": name, "tenant": tenant, "scopes": ",".join(scopes), "sha256": sha256,
               "created_at": utcnow(), "revoked_at": None}
        try:
            with self._db.begin() as conn:
                conn.execute(api_keys.insert().values(row))
        except sa.exc.IntegrityError:
            raise KeyNameTaken(f"a key named {name!r} exists already") from None

    def revoke(self, name: str) -> bool | None:
        """Revoke the key `name`: True if it was active, False if it was revoked already, None if there is none."""
        with self._db.begin() as conn:
            done = conn.execute(api_keys.update().where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
                                .values(revoked_at=utcnow())).rowcount
            if done:
                return True
            exists = conn.execute(sa.select(api_keys.c.name).where(api_keys.c.name == name)).first()
        return False if exists else None

    def all(self) -> list[KeyRecord]:
        """Every key, revoked ones too, oldest first."""
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.name))
            return [KeyRecord(row.name, row.tenant, tuple(row.scopes.split(",")), row.sha256, row.created_at,
                              row.revoked_at) for row in rows]

    def version(self) -> tuple[int, int]:
        """(rows, revoked rows): changed by every create and revoke (see the module docstring)."""
        query = sa.select(sa.func.count(), sa.func.count(api_keys.c.revoked_at))
        with self._db.connect() as conn:
            rows, revoked = conn.execute(query).one()
        return int(rows), int(revoked)

    def snapshot(self) -> KeySnapshot:
        """The active keys, as read about RELOAD_EVERY seconds ago (see the module docstring). The first call
        reads them (and raises if the catalog cannot answer); later, a check runs in a thread of its own while
        every caller goes on with what was read: a request never waits on the catalog for the keys (a catalog
        that does not answer would hold each request for a connect timeout before its own query did the same,
        and the server's event loop, which asks before a body is read, for as long), and a failed check keeps
        the last snapshot until the next one."""
        if self._snapshot is None:
            self._snapshot = self._read(self.version())
            self._checked = time.monotonic()
        elif time.monotonic() - self._checked >= RELOAD_EVERY and self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh_in_background, name="apercu-keys", daemon=True).start()
        return self._snapshot

    def _refresh_in_background(self) -> None:
        try:
            self._refresh()
        finally:
            self._checked = time.monotonic()
            self._refreshing.release()

    def _refresh(self) -> None:
        try:
            version = self.version()
            if self._snapshot is None or version != self._snapshot.version:
                self._snapshot = self._read(version)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("the catalog's API keys could not be checked for changes (%s): keeping those read before",
                        type(exc).__name__)

    def _read(self, version: tuple[int, int]) -> KeySnapshot:
        return KeySnapshot(version, tuple(key for key in self.all() if key.revoked_at is None))
