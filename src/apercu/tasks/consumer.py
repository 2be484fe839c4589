"""The worker's broker consumer: Celery's own, except that losing the broker never ends the worker.

Celery 5.7.0's consumer, when its connection to the broker is lost, first `collect()`s the connection (which
detaches its transport) and then `close()`s it. On Redis, the first close of the consuming channel is cut short by
the interrupted BRPOP read (it raises the connection error before the channel counts as closed), so the second
close goes further, into restoring the unacknowledged messages through the detached transport: an AttributeError,
which Celery takes for an "Unrecoverable error" and the worker exits (measured: SIGKILLing Redis under load ended
the worker every time, and with it the processing of everything accepted meanwhile). Closing the channel here
first, while its transport is still attached, lets the restore run (or fail with the broker's own connection
error, which is ignored like Celery ignores it); Celery's collect and close then find the channel closed and
reconnect as they should.

It also tells the worker's housekeeping when the broker was lost: the messages it held may be gone with it, so the
next recovery sweep sends again what was pending then, instead of after the recovery grace (`tasks.housekeeping`).
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from apercu.storage.catalog import utcnow
from apercu.tasks.app import context_of

# An interrupted read, then the restore: more attempts than this never happen, whatever the transport.
CLOSE_ATTEMPTS = 2


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer, closing a lost connection's channel before Celery lets go of its transport, and noting
    the loss for the next recovery sweep."""

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        context_of(self.app).broker_lost_at = utcnow()
        if self.connection is not None:
            close_default_channel(self.connection)
        super().on_connection_error_after_connected(exc)


def close_default_channel(connection: Any) -> None:
    """Close the connection's channel (if it opened one), ignoring the broker's errors, until it says it is."""
    channel = connection._default_channel  # kombu keeps no public handle that would not open one
    ignored = connection.connection_errors + connection.channel_errors
    for _ in range(CLOSE_ATTEMPTS):
        if channel is None or getattr(channel, "closed", True):
            return
        try:
            channel.close()
        except ignored:
            pass
