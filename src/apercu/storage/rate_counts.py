"""Where rate limits count requests, shared by every web process and machine: Redis when the deployment has one
(its broker is Redis), the catalog otherwise (SQLite embedded, PostgreSQL in production).

Both keep one counter per limit and caller (`key`) for a fixed window: the window's start (unix seconds) and the
count in it, changed by one atomic step per request (a Lua script on Redis, an upsert in SQL) that restarts the
count when the window has moved on. One record per caller, whatever the traffic, gone once the caller is idle
(Redis: an expiry; SQL: a sweep). The windows come from the web process's clock: machines whose clocks differ by
a fraction of a window share a window for that much less.

A store that cannot be reached raises (its `failures`: redis.RedisError, SQLAlchemy's errors): the limiter
(`api.rate_limit`) decides what that means.
"""

from __future__ import annotations

from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite

from apercu.storage.catalog import create_engine
from apercu.storage.catalog.tables import rate_counts
from apercu.storage.redis_url import SCHEMES

IDLE = 3600  # seconds: a SQL counter untouched this long is swept; a Redis one expires a minute after its window
SWEEP_EVERY = 600  # seconds between one web process's sweeps of idle SQL counters
REDIS_TIMEOUT = 0.25  # seconds: a Redis that does not answer on loopback or a LAN in this time is not answering

# KEYS[1]: the counter; ARGV: the window's start, the seconds it should outlive the window. Returns the new count.
_HIT = """
local count
if redis.call('HGET', KEYS[1], 'w') == ARGV[1] then
  count = redis.call('HINCRBY', KEYS[1], 'c', 1)
else
  redis.call('HSET', KEYS[1], 'w', ARGV[1], 'c', 1)
  count = 1
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return count
"""


class Counts(Protocol):
    """Counters of requests per fixed window. `start` is the current window's start (unix seconds), `length` its
    length in seconds."""

    def hit(self, key: str, start: int, length: int) -> int:
        """Count one request in the window: the count with it."""

    def peek(self, key: str, start: int) -> int:
        """The count in the window so far, counting nothing."""

    @property
    def failures(self) -> tuple[type[BaseException], ...]:
        """What `hit` and `peek` raise when the store cannot be reached (beside OSError)."""


class RedisCounts:
    """A hash per counter (`w`: window start, `c`: count), under `prefix`."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis  # the redis extra: only a deployment whose broker is Redis has it, or counts here

        self.failures: tuple[type[BaseException], ...] = (redis.RedisError,)
        self.client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
        self.prefix = prefix
        self._hit = self.client.register_script(_HIT)

    def hit(self, key: str, start: int, length: int) -> int:
        return int(self._hit(keys=[self.prefix + key], args=[start, length + 60]))

    def peek(self, key: str, start: int) -> int:
        window, count = self.client.hmget(self.prefix + key, ["w", "c"])
        return int(count or 0) if window is not None and int(window) == start else 0


class CatalogCounts:
    """A row per counter in apercu_rate_counts, upserted (INSERT ... ON CONFLICT DO UPDATE ... RETURNING: one
    statement, atomic on SQLite and PostgreSQL alike, so it runs in autocommit: no BEGIN and COMMIT round trips).
    The statements are built once: per request, only run."""

    def __init__(self, engine: sa.Engine) -> None:
        self.failures: tuple[type[BaseException], ...] = (sa.exc.SQLAlchemyError,)
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        insert: Any = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(rate_counts)
        insert = insert.values(key=sa.bindparam("key"), window_start=sa.bindparam("start"), hits=1)
        same_window = rate_counts.c.window_start == insert.excluded.window_start
        self._hit = insert.on_conflict_do_update(
            index_elements=[rate_counts.c.key],
            set_={"hits": sa.case((same_window, rate_counts.c.hits + 1), else_=1),
                  "window_start": insert.excluded.window_start},
        ).returning(rate_counts.c.hits)
        self._peek = sa.select(rate_counts.c.hits).where(
            rate_counts.c.key == sa.bindparam("key"), rate_counts.c.window_start == sa.bindparam("start"))
        self._sweep = sa.delete(rate_counts).where(rate_counts.c.window_start < sa.bindparam("before"))
        self.swept = 0

    def hit(self, key: str, start: int, length: int) -> int:
        with self.engine.connect() as conn:
            count = int(conn.execute(self._hit, {"key": key, "start": start}).scalar_one())
            if start - self.swept >= SWEEP_EVERY:
                self.swept = start
                conn.execute(self._sweep, {"before": start - IDLE})
        return count

    def peek(self, key: str, start: int) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(self._peek, {"key": key, "start": start}).scalar() or 0)


def open_counts(broker_url: str, queue: str, database_url: str) -> Counts:
    """Redis when the broker is Redis (the counters under `apercu:<queue>:rate:`, so deployments sharing a Redis
    keep apart as their queues do), else the catalog, through an engine of its own whose commits do not wait for
    the disk (SQLite: synchronous=NORMAL; PostgreSQL: synchronous_commit=off): a count lost with the machine's
    power costs nothing, while waiting for a flush would cost every request a disk write (measured on PostgreSQL:
    12 ms a request, bench/rate_limit.py)."""
    if broker_url.startswith(SCHEMES):
        return RedisCounts(broker_url, f"apercu:{queue}:rate:")
    engine = create_engine(database_url, durable=False)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _commit_without_waiting)
    return CatalogCounts(engine)


def _commit_without_waiting(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")
    dbapi_connection.commit()
