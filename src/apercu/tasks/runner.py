"""Running a worker: the Celery worker in the foreground, housekeeping beside it, however it was started.

`apercu worker` runs one with apercu's own options (`run_worker`); `celery -A apercu.worker worker ...` (see
`apercu.worker`, the app for Celery's own command line) runs the same app with whatever options a Celery user
gives. Housekeeping hangs on the worker's own signals, so both get it: it starts with the worker, stops sweeping
when shutdown begins, and stops beating (deregistering the worker) only once the last task has ended. So do
logging (apercu's format, `apercu.logs`, in place of Celery's own setup) and, with APERCU_METRICS_PORT, the
worker's own metrics endpoint.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

from celery import Celery, bootsteps
from celery.signals import setup_logging, worker_init, worker_shutdown, worker_shutting_down

from apercu import logs, metrics
from apercu.config import Settings
from apercu.tasks.app import context_of, make_celery
from apercu.tasks.housekeeping import Housekeeping

log = logging.getLogger(__name__)
STARTUP_FAILED = 3


def worker_app(settings: Settings) -> Celery:
    """The Celery app of one worker process, housekeeping attached (stopped by the worker's own shutdown)."""
    return _attached(settings)[0]


def _attached(settings: Settings) -> tuple[Celery, Callable[[], None]]:
    """`worker_app`, and the stop of its housekeeping for a worker that never got as far as shutting down. Its
    worker id is new at every start, so a restarted worker never takes its dead predecessor's leases for its own."""
    worker = uuid.uuid4().hex
    app = make_celery(settings, worker)
    stop_housekeeping = attach_housekeeping(app, worker)
    attach_observability(app, settings)
    return app, stop_housekeeping


def attach_observability(app: Celery, settings: Settings) -> None:
    """When a worker of `app` starts: apercu's log format rather than Celery's (a receiver of `setup_logging`
    makes Celery leave logging alone: no handlers of its own, no stdout redirection), at the worker's --loglevel;
    and, when APERCU_METRICS_PORT is set, its metrics over HTTP (for a worker whose data directory no web shares).
    """

    def configure_logging(loglevel: int | str | None = None, **_: Any) -> None:
        logs.configure(settings, loglevel or None)

    def serve_metrics(sender: Any, **_: Any) -> None:
        if sender.app is app and settings.metrics_port > 0:
            metrics.start_endpoint(settings.metrics_port, settings.host)

    setup_logging.connect(configure_logging, weak=False)
    worker_init.connect(serve_metrics, weak=False)


def attach_housekeeping(app: Celery, worker: str) -> Callable[[], None]:
    """Start housekeeping when a worker of `app` starts (`worker_init`) and stop it when that worker has shut down
    (`worker_shutdown`, sent after the pool's last task); returns the stop, for a worker that never got that far."""
    running: list[Housekeeping] = []

    def start(sender: Any, **_: Any) -> None:
        if sender.app is not app or running:
            return
        try:
            context_of(app).storage  # noqa: B018 - create the schema before any thread races to
            running.append(Housekeeping(app, worker))
            running[0].start()
        except Exception:  # noqa: BLE001 - Celery would log it and run on: a worker that never beats has its leases
            # taken over while it works, so it must not take any
            log.critical("the worker cannot start its heartbeat (is the database reachable?); exiting", exc_info=True)
            os._exit(STARTUP_FAILED)

    def stopping(**_: Any) -> None:
        for housekeeping in running:
            housekeeping.stopping.set()

    def stop(sender: Any = None, **_: Any) -> None:
        if (sender is None or sender.app is app) and running:
            running.pop().stop()

    class BrokerConnected(bootsteps.StartStopStep):  # type: ignore[misc]  # Celery has no type hints
        """Started with the worker's consumer, and again each time it has reconnected to the broker."""

        requires = ("celery.worker.consumer.tasks:Tasks",)

        def start(self, _consumer: Any) -> None:
            for housekeeping in running:
                housekeeping.broker_connected()

    app.steps["consumer"].add(BrokerConnected)
    worker_init.connect(start, weak=False)
    worker_shutting_down.connect(stopping, weak=False)
    worker_shutdown.connect(stop, weak=False)
    return stop


def run_worker(settings: Settings) -> None:
    """Run a worker until it is told to stop."""
    app, stop_housekeeping = _attached(settings)
    context_of(app).storage  # noqa: B018 - a database that cannot be reached fails here, before anything runs
    try:
        app.worker_main(_argv(app, settings))
    finally:
        stop_housekeeping()


def _argv(app: Celery, settings: Settings) -> list[str]:
    argv = ["worker", f"--loglevel={settings.log_level}", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if settings.log_format == "json":
        argv.insert(0, "--quiet")  # no start-up banner: every line of the output is a JSON object
    argv += [f"--queues={app.conf.task_default_queue}", f"--hostname=apercu-{settings.queue}@%h"]
    argv.append(f"--concurrency={settings.worker_concurrency or _cpus()}")
    return argv


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
