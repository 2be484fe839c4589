"""How many connections a web process may hold: each may cost a socket and a body file, and the descriptor
limit (often a soft 1024) must cover them, or stalled clients could exhaust it."""

from __future__ import annotations

import logging
import resource

FD_RESERVE = 128  # descriptors besides connections: listeners, logs, database, uploads being committed
log = logging.getLogger(__name__)


def connection_budget(wanted: int) -> int:
    """Connections per process the descriptor limit allows, raising the soft limit as far as the hard one
    permits; fewer than `wanted` (with a warning) when even that is not enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < needed:
        allowed = max(1, (soft - FD_RESERVE) // 2)
        log.warning("APERCU_WEB_CONNECTIONS=%d needs %d file descriptors; the limit is %d: using %d", wanted,
                    needed, soft, allowed)
        return allowed
    return wanted
