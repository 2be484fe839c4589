"""The Celery app for Celery's own command line, configured from the APERCU_* environment:

    celery -A apercu.worker worker --loglevel=INFO      # a worker, housekeeping included
    celery -A apercu.worker inspect ping                # and every other Celery command: purge, events, ...

`apercu worker` remains the simple way in; both run the same app, task and housekeeping (`tasks.worker`).
"""

from __future__ import annotations

from apercu.config import Settings
from apercu.tasks.worker import worker_app

app = worker_app(Settings.from_env())
