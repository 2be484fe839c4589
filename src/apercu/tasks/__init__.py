"""The worker side: the Celery app, its tasks and what queues them (`app`), the tasks' typed context (`context`),
one image's processing (`processing`) and what it tells the operators (`outcomes`), imaging in a child process
(`sandbox`), heartbeat, recovery and cleanup (`housekeeping`), and running a worker (`runner`). Completion
webhooks, which the web uses too, are a package of their own (`apercu.webhooks`).

The web imports only what is here: the queueing functions, and how long a lease outlives a task's time limit."""

from apercu.tasks.app import TASK_NAME, context_of, enqueue, enqueue_render, make_celery
from apercu.tasks.context import ApercuTask, WorkerContext
from apercu.tasks.jobs import RenderJob, RenditionJob, ThumbnailJob
from apercu.tasks.processing import LEASE_MARGIN, Processor

__all__ = [
    "LEASE_MARGIN", "TASK_NAME", "ApercuTask", "Processor", "RenderJob", "RenditionJob", "ThumbnailJob",
    "WorkerContext", "context_of", "enqueue", "enqueue_render", "make_celery",
]
