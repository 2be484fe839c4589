"""Who is calling: the identity an API key carries (its name, its tenant, its scopes), for the routes to scope what
they read and write, and for limits and logs to name.

The access gate (`api.access`) decides it once per request, from the key presented, and `remember`s it; routes
ask `current()`. Without API keys there is one tenant and every caller may do everything, so nothing changes for
a deployment that never set a key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from flask import g

from apercu.storage.catalog import DEFAULT_TENANT as DEFAULT_TENANT  # re-exported: the tenant without keys

SCOPES = ("read", "write", "delete", "admin")  # admin: every tenant, and the operator's endpoints
Scope = Literal["read", "write", "delete", "admin"]  # one of SCOPES, as an operation declares what it needs
_ATTRIBUTE = "apercu_caller"
# A key's name and a tenant: short, and safe in a log line, a metric label and a shell (no spaces, no quotes).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_ALLOWED = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"


class BadIdentity(ValueError):
    """A key's name, tenant or scopes that are not what `NAME` and `SCOPES` allow (the message says why)."""


def parse_scopes(text: str) -> tuple[str, ...]:
    """`read,write` as ("read", "write"), in SCOPES' order; BadIdentity for an unknown or no scope."""
    given = {scope.strip() for scope in text.split(",") if scope.strip()}
    if not given or given - set(SCOPES):
        raise BadIdentity(f"the scopes are not a comma list of {', '.join(SCOPES)}")  # no value: it may be a key
    return tuple(scope for scope in SCOPES if scope in given)


def checked_name(text: str, what: str) -> str:
    """`text` if it is a good key name or tenant (`what` says which), else BadIdentity (without the value: a key
    file's line with its fields out of order holds the key there)."""
    if not NAME.fullmatch(text):
        raise BadIdentity(f"{what} is not {NAME_ALLOWED}")
    return text


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


def presented_key(caller: Caller) -> bool:
    """Whether the caller is one a key (or the metrics token) names, not ANONYMOUS or NOBODY: who may see what a
    deployment without keys shows nobody (/readyz's internal details)."""
    return caller is not ANONYMOUS and caller is not NOBODY  # by identity: a key may share their names


def remember(caller: Caller) -> None:
    setattr(g, _ATTRIBUTE, caller)


def current() -> Caller:
    """This request's caller: the one the gate remembered (NOBODY on a public path when keys are configured and
    none was presented), else ANONYMOUS (a deployment without keys)."""
    found: Caller = g.get(_ATTRIBUTE, ANONYMOUS)
    return found
