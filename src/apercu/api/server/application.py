"""gunicorn as apercu runs it: configured from apercu's settings alone, its workers `BufferingWorker`s, its own
log lines through apercu's logging, and `serve`, what `apercu web` runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from apercu import metrics
from apercu.api import create_app
from apercu.api.server.budget import connection_budget
from apercu.api.server.worker import BufferingWorker
from apercu.config import Settings


class GunicornLogger(glogging.Logger):  # type: ignore[misc, unused-ignore]  # gunicorn has no type stubs
    """gunicorn's own messages (starting, workers booting and exiting, errors) through apercu's logging and its
    format (`apercu.logs`: JSON with APERCU_LOG_FORMAT=json) instead of gunicorn's handlers."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True


def _child_exit(_server: Any, worker: Any) -> None:
    """In the master, when a worker process ends: its live gauges leave the sums (see apercu.metrics)."""
    metrics.process_exited(worker.pid)


class WebServer(BaseApplication):  # type: ignore[misc, unused-ignore]  # gunicorn has no type stubs
    """gunicorn configured from apercu's settings alone."""

    def __init__(self, settings: Settings, connections: int, on_ready: Callable[[], None]) -> None:
        self.settings = settings
        self.connections = connections
        self.on_ready = on_ready
        super().__init__()

    def load_config(self) -> None:
        settings = self.settings
        config = {
            "bind": [f"{settings.host}:{settings.port}"],
            "workers": settings.web_workers,
            "worker_class": BufferingWorker,
            "threads": settings.web_threads,
            "worker_connections": self.connections,
            # Request bodies are spooled on the data volume, which has room for uploads (a tmpfs /tmp may not).
            "tmp_upload_dir": str(Path(settings.data_dir).resolve() / "tmp"),
            "graceful_timeout": 10,
            "timeout": 60,
            "loglevel": settings.log_level.lower(),
            "accesslog": None,  # api.observe logs every request, with its request id
            "logger_class": GunicornLogger,
            "child_exit": _child_exit,
            "when_ready": lambda _server: self.on_ready(),  # in the master, once it listens
            "control_socket_disable": True,
            # X-Forwarded-* are apercu's to judge (`api.forwarded`, APERCU_TRUSTED_PROXIES), not gunicorn's, which
            # would trust loopback's by default (the scheme, and SCRIPT_NAME and PATH_INFO sent as headers).
            "forwarded_allow_ips": "",
            "secure_scheme_headers": {},
        }
        for name, value in config.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        return create_app(self.settings)


def serve(settings: Settings, on_ready: Callable[[], None] = lambda: None) -> None:
    """Run the web server in the foreground until SIGTERM or Ctrl-C; `on_ready` once it listens."""
    if settings.request_timeout <= 0:
        raise ValueError(f"APERCU_REQUEST_TIMEOUT={settings.request_timeout} must be positive")
    create_app(settings)  # fail fast, in the foreground, on a bad database URL or data directory
    WebServer(settings, connection_budget(settings.web_connections), on_ready).run()
