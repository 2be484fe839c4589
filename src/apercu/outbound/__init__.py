"""Requests the service makes to URLs it was given (webhooks' deliveries, uploads by URL), all under one policy
against server-side request forgery: which addresses may be called (`addresses`), and connections pinned to the
checked address with timeouts and an overall deadline (`connections`)."""

from apercu.outbound.addresses import MAX_URL, Refused, Target, check, is_public, resolve
from apercu.outbound.connections import connect, deadline

__all__ = ["MAX_URL", "Refused", "Target", "check", "connect", "deadline", "is_public", "resolve"]
