"""Who is calling: the identity an API key carries (its name, its tenant, its scopes), for the routes to scope what
they read and write, and for limits and logs to name.

The access gate (`api.access`) decides it once per request, from the key presented, and `remember`s it; routes
ask `current()`. Without API keys there is one tenant and every caller may do everything, so nothing changes for
a deployment that never set a key.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import g

from apercu.storage.catalog import DEFAULT_TENANT  # every image uploaded without keys, and of keys set the old way

SCOPES = ("read", "write", "delete", "admin")  # admin: every tenant, and the operator's endpoints
_ATTRIBUTE = "apercu_caller"


@dataclass(frozen=True)
class Caller:
    name: str
    tenant: str
    scopes: frozenset[str]

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    def may(self, scope: str) -> bool:
        """admin holds every scope."""
        return self.admin or scope in self.scopes

    @property
    def tenant_filter(self) -> str | None:
        """The tenant the caller's reads and deletes are confined to; None (every tenant) for admin."""
        return None if self.admin else self.tenant


ANONYMOUS = Caller("anonymous", DEFAULT_TENANT, frozenset(SCOPES))  # no keys configured: one tenant, all allowed
NOBODY = Caller("nobody", DEFAULT_TENANT, frozenset())  # keys configured, none presented (a public path): no scope


def remember(caller: Caller) -> None:
    setattr(g, _ATTRIBUTE, caller)


def current() -> Caller:
    """This request's caller: the one the gate remembered (NOBODY on a public path when keys are configured and
    none was presented), else ANONYMOUS (a deployment without keys)."""
    found: Caller = g.get(_ATTRIBUTE, ANONYMOUS)
    return found
