# mypy: disallow-untyped-calls=False
# (kombu ships no annotations for its Redis transport)
"""kombu's Redis transport with one fault mended, so that a worker outlives its broker's outage.

Celery 5.7's consumer, when its connection to the broker is lost, first collects the connection (which detaches
it from the transport: `client` becomes None) and then closes it. Closing a Redis channel that holds messages
delivered but not yet acknowledged (a task running under `acks_late`, others prefetched) puts them back first,
through a connection pool built from that detached client: AttributeError, which Celery takes for an
unrecoverable error, and the worker exits (measured: SIGKILL the Redis server while a task runs). Here a channel
whose transport has lost its client skips putting them back (and so does the late acknowledgement of the task
that was running, which fails the same way): the broker cannot be reached anyway, a Redis that kept them
restores them after their visibility timeout, and the work they stand for is in the catalog, which
the recovery sweep sends again (`tasks.housekeeping`). The worker then reconnects and carries on.

Chosen for `redis://` and `rediss://` broker URLs by `tasks.app.make_celery` (Celery's `broker_transport`), by the
name `storage.redis_url` gives it, so that only a process whose broker is Redis imports it.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis


class QoS(redis.QoS):
    """Putting messages back, acknowledging or rejecting them through a channel whose connection is gone does
    nothing, instead of raising AttributeError (the task that finishes after the loss acknowledges too)."""

    def restore_unacked(self, client: Any = None) -> None:
        if client is not None or not self._detached():
            super().restore_unacked(client)

    def ack(self, delivery_tag: Any) -> None:
        if not self._detached():
            super().ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if not self._detached():
            super().reject(delivery_tag, requeue)

    def _detached(self) -> bool:
        transport = self.channel.connection
        return transport is None or transport.client is None


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
