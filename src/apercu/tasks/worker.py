"""Running a worker: the Celery worker in the foreground, housekeeping beside it, sandboxes closed at the end."""

from __future__ import annotations

import os
import uuid

from celery import Celery
from celery.signals import worker_shutting_down

from apercu.config import Settings
from apercu.tasks.app import make_celery
from apercu.tasks.housekeeping import Housekeeping


def run_worker(settings: Settings) -> None:
    """Run a worker until it is told to stop. Its id is new at every start, so a restarted worker never takes
    its dead predecessor's leases for its own."""
    worker = uuid.uuid4().hex
    app = make_celery(settings, worker)
    app.processor.storage  # noqa: B018 - create the schema before any thread races to
    housekeeping = Housekeeping(app, worker)
    housekeeping.start()
    worker_shutting_down.connect(lambda **_: housekeeping.stopping.set(), weak=False)
    try:
        app.worker_main(_argv(app, settings))
    finally:
        housekeeping.stop()


def _argv(app: Celery, settings: Settings) -> list[str]:
    argv = ["worker", f"--loglevel={settings.log_level}", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    argv += [f"--queues={app.conf.task_default_queue}", f"--hostname=apercu-{settings.queue}@%h"]
    argv.append(f"--concurrency={settings.worker_concurrency or _cpus()}")
    return argv


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
