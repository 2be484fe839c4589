"""The Celery app for Celery's own command line, configured from the APERCU_* environment:

    celery -A apercu.worker worker --loglevel=INFO      # a worker, housekeeping included
    celery -A apercu.worker inspect ping                # and every other Celery command: purge, events, ...

`apercu worker` remains the simple way in; both run the same app, tasks and housekeeping (`tasks.runner`).
Logging and the metrics directory are set up first, as `apercu worker` does, before anything imports
prometheus_client (see `apercu.metrics_multiprocess`).
"""

from __future__ import annotations

from apercu import logs, metrics_multiprocess
from apercu.config import Settings

settings = Settings.from_env()
logs.configure(settings)
metrics_multiprocess.prepare(settings.data_dir, "worker")

from apercu.tasks.runner import worker_app  # noqa: E402 - after the metrics directory (see above)

app = worker_app(settings)
