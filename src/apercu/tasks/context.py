"""What the worker's tasks work with, typed: a `WorkerContext` (settings, storage, the processor, the webhook
deliveries), one per Celery app, held by the tasks' base class `ApercuTask`.

Celery makes one instance of each task class per process, and documents a custom task base class as the place
for what tasks reuse from call to call (a database connection, say). Here the three tasks of an app share one
context, which `make_celery` gives each of them (a task option becomes an attribute of the task's class): a
context per task would open the storage three times and could start three imaging processes per thread, where
the rule is one (`Processor.sandbox`). Creating the context opens nothing: the storage is opened on first use,
and a worker uses it before its housekeeping starts, so the schema is created once, before any thread races to.
"""

from __future__ import annotations

from functools import cached_property

from celery import Task

from apercu.config import Settings
from apercu.storage import Storage
from apercu.tasks.processing import Processor
from apercu.webhooks import Deliveries


class WorkerContext:
    """One worker process's settings and resources; `worker` is the id it beats under (None: no heartbeat)."""

    def __init__(self, settings: Settings, worker: str | None = None) -> None:
        self.settings = settings
        self.processor = Processor(settings, worker)

    @property
    def storage(self) -> Storage:
        """Opened on first use, once per process: the processor's, whose connections every task shares."""
        return self.processor.storage

    @cached_property
    def deliveries(self) -> Deliveries:
        """Made on the first delivery (it needs the catalog, so the storage open)."""
        return Deliveries(self.settings, self.storage.catalog)


class ApercuTask(Task):  # type: ignore[misc,unused-ignore]  # Celery has no type hints: Task is Any
    """The base class of apercu's tasks: each has the app's worker context (see the module docstring)."""

    context: WorkerContext  # given by make_celery: app.task(..., base=ApercuTask, context=...)
