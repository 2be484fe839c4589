"""Which broker URLs are Redis, and the kombu transport they get (`storage.redis_broker`), named without importing
it: kombu's Redis transport needs redis-py, which only the `redis` extra installs, so a process imports it only
when its broker is Redis (kombu loads the transport by this name then)."""

from __future__ import annotations

SCHEMES = ("redis://", "rediss://")
TRANSPORT = "apercu.storage.redis_broker:Transport"
