"""Completion webhooks, used by the web and the worker alike: which URLs may be called (`addresses`, the rules
against server-side request forgery: the web checks an upload's `callback_url` with them), one signed POST
(`transport`), and the deliveries of settled images, attempted, retried with backoff and queued when due
(`deliveries`: the worker attempts them, the web queues a duplicate upload's)."""

from apercu.outbound import Refused, Target, check, is_public, resolve
from apercu.webhooks.deliveries import DELIVER_TASK, Deliveries, send_due
from apercu.webhooks.transport import Answer, post

__all__ = [
    "DELIVER_TASK", "Answer", "Deliveries", "Refused", "Target", "check", "is_public", "post", "resolve", "send_due",
]
