"""The worker side: the Celery app and task (`app`), one image's processing (`processing`), imaging in a child
process (`sandbox`), heartbeat, recovery and cleanup (`housekeeping`), and running it all (`worker`)."""

from apercu.tasks.app import TASK_NAME, enqueue, enqueue_render, make_celery
from apercu.tasks.processing import Processor

__all__ = ["TASK_NAME", "Processor", "enqueue", "enqueue_render", "make_celery"]
