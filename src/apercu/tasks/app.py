"""The Celery app and its tasks, the same on the embedded SQLite broker, Redis and RabbitMQ: processing an image,
rendering another size or format of its thumbnail or a rendition when a client first asks for one (`tasks.jobs`),
and one attempt of a completion webhook (`apercu.webhooks`). The tasks work with their app's typed context
(`tasks.context`).

The processing task is safe to deliver twice: the catalog lease (`storage.catalog.leases.Leases.claim`) decides who
works; a render delivered twice renders twice, and the second write replaces the first with the same bytes.
Whatever happens inside it, the image ends in a final state or free for recovery: see `tasks.processing`.
The worker runs tasks in threads; the imaging itself runs in one child process per thread (`tasks.sandbox`),
so the worker has no pool of forked children whose death could wedge it, and time limits are the sandbox's.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.exceptions import Reject

from apercu import logs
from apercu.config import Settings
from apercu.storage import redis_url
from apercu.storage.catalog import Claim
from apercu.storage.outages import Dependency, classify, log_failure
from apercu.tasks.context import ApercuTask, WorkerContext
from apercu.tasks.jobs import RENDER_TASK, RENDITION_TASK, RenderJob, RenditionJob, ThumbnailJob
from apercu.webhooks import DELIVER_TASK, send_due

TASK_NAME = "apercu.process_image"
# A dependency's outage (`storage.outages.classify`) is retried with backoff by the same task id, which still
# owns the lease: 2^n s, 1 + 2 + 4 + 8 + 16 = 31 s in all before an image is left for recovery.
OUTAGE_RETRIES = 5
SETTLED_HERE = {Claim.CLAIMED.value, Claim.EXHAUSTED.value, "failed"}  # results after which this task settled it
# A message header, not an argument: a worker of an earlier version ignores it (and a message without it, from
# an earlier web or from recovery, runs as before), and a retry sends it again with the task.
REQUEST_ID_HEADER = "apercu_request_id"
# A broker that does not answer (a blackholed address, a machine gone) must not hold an upload, which is accepted
# without it: connecting gives up after BROKER_CONNECT_TIMEOUT (AMQP: `broker_connection_timeout`; Redis: the
# transport's `socket_connect_timeout`, else the kernel's SYN retries, about two minutes, per attempt), and a
# publish is retried once (Celery's default is 3 times, each paying that timeout). A Redis connection that stops
# answering mid-command is dropped after REDIS_SOCKET_TIMEOUT (above the consumer's 1 s BRPOP).
BROKER_CONNECT_TIMEOUT = 1.0
REDIS_SOCKET_TIMEOUT = 10.0
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
log = logging.getLogger(__name__)


def make_celery(settings: Settings, worker: str | None = None) -> Celery:
    """A Celery app bound to these settings, with its tasks registered, sharing one worker context (which opens
    nothing until a task or the worker uses it: a web's app only sends)."""
    app = Celery("apercu", set_as_current=False)
    transport_options: dict[str, Any] = {}
    virtual = settings.embedded_broker or settings.broker_url.startswith(redis_url.SCHEMES)
    if settings.embedded_broker:
        import apercu.storage.sqlite_broker  # noqa: F401 - registers the transport's URL scheme

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        transport_options["polling_interval"] = settings.broker_poll_interval
    elif settings.broker_url.startswith(("redis://", "rediss://")):
        transport_options |= {"socket_connect_timeout": BROKER_CONNECT_TIMEOUT, "socket_timeout": REDIS_SOCKET_TIMEOUT}
    app.conf.update(
        broker_url=settings.resolved_broker_url,
        broker_transport=redis_url.TRANSPORT if settings.broker_url.startswith(redis_url.SCHEMES) else None,
        broker_transport_options=transport_options,
        broker_connection_timeout=BROKER_CONNECT_TIMEOUT,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy=PUBLISH_RETRY_POLICY,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        worker_pool="threads",
        worker_prefetch_multiplier=4,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # What our sends add (`enqueue`, `enqueue_render`). A task goes to the anonymous exchange with its queue's
        # name as the routing key: on kombu's virtual transports (the embedded SQLite broker, Redis) that puts it in
        # the queue whether or not the queue was declared, so a send there declares nothing (Celery's declaring
        # copies and binds the queue on every send: ~0.2 ms of the web's CPU per upload, py-spy); an AMQP broker
        # drops a message for a queue nobody declared, so there Celery declares it, as it always did.
        apercu_publishing={"declare": []} if virtual else {},
    )
    # Not `shared` with apps made later (Celery's default): each app's tasks have that app's context.
    common = {"base": ApercuTask, "bind": True, "shared": False, "context": WorkerContext(settings, worker)}
    app.task(name=TASK_NAME, max_retries=None, **common)(process_image)
    app.task(name=RENDER_TASK, max_retries=OUTAGE_RETRIES, **common)(render_thumbnail)
    app.task(name=RENDITION_TASK, max_retries=OUTAGE_RETRIES, **common)(render_rendition)
    app.task(name=DELIVER_TASK, max_retries=None, **common)(deliver_webhook)  # attempts are counted in the row
    return app


def context_of(app: Celery) -> WorkerContext:
    """The worker context of an app that `make_celery` made (its tasks hold it: see `tasks.context`)."""
    task = app.tasks[TASK_NAME]
    assert isinstance(task, ApercuTask)
    return task.context


def process_image(task: ApercuTask, image_id: str) -> str:
    """The Celery task body: one image, identified by its catalog id; lines logged meanwhile carry the id of the
    request that uploaded it."""
    with logs.request_context(getattr(task.request, REQUEST_ID_HEADER, None)):
        return _process_image(task, image_id)


def _process_image(task: ApercuTask, image_id: str) -> str:
    result = _processed(task, image_id)
    if result in SETTLED_HERE:  # (a busy image was retried by raising; a message for one already settled finds
        _send_webhooks(task, image_id)  # its deliveries sent, or left to the recovery sweep)
    return result


def _send_webhooks(task: ApercuTask, image_id: str) -> None:
    if not task.context.settings.webhook_secret:
        return  # no secret, no webhooks (an upload's callback_url is refused, APERCU_WEBHOOK_URL needs one): no query
    try:
        send_due(task.app, task.context.storage.catalog, image_id)
    except Exception as exc:  # noqa: BLE001 - processing is done; the recovery sweep sends what could not be queued
        log_failure(log, exc, "image %s: could not queue its webhooks; the recovery sweep will", image_id)


def _processed(task: ApercuTask, image_id: str) -> str:
    processor = task.context.processor
    owner = task.request.id or image_id
    try:
        outcome, retry_in = processor.process(image_id, owner)
    except Exception as exc:  # noqa: BLE001 - an outage is retried; a bug of ours must still end the image
        dependency = classify(exc)
        if dependency is None:
            reference = uuid.uuid4().hex[:12]
            log.exception("image %s: unexpected error, recorded as failure (reference %s)", image_id, reference)
            processor.fail_unexpectedly(image_id, owner, reference)
            return "failed"
        leases = processor.storage.catalog.leases
        return _outage(task, exc, dependency, f"image {image_id}", lambda: leases.release(image_id, owner, resend=True))
    if outcome is Claim.BUSY:  # (its message lost to a broker outage is no loss: the lease's holder settles it)
        raise task.retry(countdown=retry_in)
    return str(outcome.value)


def _outage(task: ApercuTask, exc: Exception, dependency: Dependency, what: str, hand_back: Callable[[], None]) -> str:
    """A dependency's outage: retried by the same task id (an image under the same lease), with backoff, then
    handed back (`hand_back`: pending again, for the recovery sweep, or the next request, to send again) and
    never failed. One warning line per retry, no traceback: an outage is not a bug."""
    retries = task.request.retries
    if retries < OUTAGE_RETRIES:
        raise _retry_outage(task, what, hand_back, exc, dependency, 2**retries) from exc
    log.error("%s: %s still unavailable after %d retries (%s); handed back", what, dependency, OUTAGE_RETRIES, exc)
    _hand_back(what, hand_back)
    return "released"


def _retry_outage(
    task: ApercuTask, what: str, hand_back: Callable[[], None], exc: Exception, dependency: Dependency,
    countdown: int,
) -> Exception:
    """One warning line per retry (no traceback: an outage is not a bug), then `_retry`, to raise."""
    log.warning("%s: %s unavailable (%s: %s); retry %d in %d s", what, dependency, type(exc).__name__, exc,
                task.request.retries + 1, countdown)
    return _retry(task, what, hand_back, countdown, exc)


def _retry(
    task: ApercuTask, what: str, hand_back: Callable[[], None], countdown: float, exc: Exception | None = None
) -> Exception:
    """Celery's retry, to raise. Celery publishes the retry as a new message; when the broker cannot take it,
    Celery rejects the message being run, and the work would be found again only once its lease or due time
    lapsed. So it is handed back at once, for the recovery sweep to send as soon as the broker is back."""
    try:
        retry: Exception = task.retry(exc=exc, countdown=countdown)
    except Reject as rejected:
        if classify(rejected.reason) != "broker":
            raise
        log.warning("%s: the broker cannot take its retry (%s); handed back", what, rejected.reason)
        _hand_back(what, hand_back)
        raise
    return retry


def _hand_back(what: str, hand_back: Callable[[], None]) -> None:
    """Hand the work back; with the catalog away too, it is found once its lease or due time lapses instead."""
    try:
        hand_back()
    except Exception as exc:
        if classify(exc) is None:
            raise
        log.error("%s: could not hand it back either (%s); found again once its lease or due time lapses", what, exc)


def render_thumbnail(task: ApercuTask, image_id: str, size: int, ext: str) -> str:
    """The Celery task body: one thumbnail variant (see `_render`)."""
    return _render(task, ThumbnailJob(image_id, size, ext))


def render_rendition(task: ApercuTask, image_id: str, name: str) -> str:
    """The Celery task body: one rendition, by its canonical name (`Rendition.key`; see `_render`)."""
    return _render(task, RenditionJob(image_id, name))


def _render(task: ApercuTask, job: RenderJob) -> str:
    """An outage is retried, then handed back: the request is kept (never failed for it), and the next client
    asking for the variant or rendition sends it again."""
    with logs.request_context(getattr(task.request, REQUEST_ID_HEADER, None)):
        return _rendered(task, job)


def _rendered(task: ApercuTask, job: RenderJob) -> str:
    processor = task.context.processor
    try:
        processor.render(job)
    except Exception as exc:  # noqa: BLE001 - an outage is retried; a bug of ours fails the request
        dependency = classify(exc)
        if dependency is None:  # so that clients stop waiting for it
            reference = uuid.uuid4().hex[:12]
            log.exception("image %s: unexpected error rendering %s %s (reference %s)", job.image_id, job.kind,
                          job.label, reference)
            processor.render_failed_unexpectedly(job, reference)
            return "failed"
        what = f"image {job.image_id}: rendering {job.label}"
        return _outage(task, exc, dependency, what, lambda: processor.render_unsent(job))
    return "rendered"


def deliver_webhook(task: ApercuTask, delivery_id: str) -> str:
    """The Celery task body: one attempt of one completion webhook, retried with backoff while it fails (and
    while a dependency is away: the delivery's row keeps it, however long that takes, and its attempts count
    only the receiver's failures). A retry the broker cannot take leaves it to the recovery sweep."""
    what = f"webhook delivery {delivery_id}"

    def hand_back() -> None:
        task.context.storage.catalog.deliveries.mark_unsent([delivery_id])

    try:
        retry_in = task.context.deliveries.attempt(delivery_id)
    except Exception as exc:
        dependency = classify(exc)
        if dependency is None:
            raise
        raise _retry_outage(task, what, hand_back, exc, dependency, min(60, 2**task.request.retries)) from exc
    if retry_in is not None:
        raise _retry(task, what, hand_back, retry_in)
    return "ended"


def enqueue(app: Celery, image_id: str, request_id: str | None = None) -> None:
    _send(app, TASK_NAME, [image_id], request_id)


def enqueue_render(app: Celery, job: RenderJob, request_id: str | None = None) -> None:
    name, args = job.task
    _send(app, name, args, request_id)


def _send(app: Celery, name: str, args: list[Any], request_id: str | None) -> None:
    """What `app.send_task` does for these sends, less what they do not use: the message is Celery's own
    (`create_task_message`), published by Celery's own `send_task_message` with its retry policy, but without
    the router (the queue is named), the registry's options, the result object nobody reads or `saferepr` of an
    id: half of send_task's ~1.2 ms of the web's CPU per upload (py-spy). On kombu's virtual transports nothing is
    declared (`make_celery`)."""
    amqp = app.amqp
    message = amqp.create_task_message(
        str(uuid.uuid4()), name, args, {}, reply_to=app.thread_oid, create_sent_event=app.conf.task_send_sent_event,
        argsrepr=repr(args), kwargsrepr="{}", ignore_result=None,
    )
    with app.producer_or_acquire() as producer, producer.connection._reraise_as_library_errors():
        amqp.send_task_message(producer, name, message, queue=app.conf.task_default_queue,
                               headers=_headers(request_id), **app.conf.apercu_publishing)


def _headers(request_id: str | None) -> dict[str, str]:
    return {REQUEST_ID_HEADER: request_id} if request_id else {}
