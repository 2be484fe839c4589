"""What a render task makes from an original on a client's first request, and keeps under its blob key: a
thumbnail variant (`/thumbnails/<id>.webp?size=512`) or a rendition (`/r/<signature>/<options>/<id>.<ext>`).

Both go one way (`service.Service._variant` asks, `tasks.app` queues and retries, `Processor.render` renders in
the sandbox, stores, and records the end in `catalog.renders`, which wakes the waiting requests); a job says only
what differs: its task and arguments, its blob key, and which imaging entry point renders it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, ClassVar, Protocol

from apercu.config import Settings
from apercu.imaging.analyse import Options
from apercu.imaging.renditions.options import parse
from apercu.imaging.thumbnail import OUTPUTS
from apercu.storage import Storage, blob_keys
from apercu.tasks.sandbox import Sandbox

RENDER_TASK = "apercu.render_thumbnail"
RENDITION_TASK = "apercu.render_rendition"


class Processor(Protocol):
    """What a job renders with: `tasks.processing.Processor` (named here by what it offers, so that the
    processor may import the jobs)."""

    settings: Settings
    options: Options

    @property
    def sandbox(self) -> Sandbox: ...

    @property
    def storage(self) -> Storage: ...


@dataclass(frozen=True)
class RenderJob(ABC):
    image_id: str

    @property
    @abstractmethod
    def task(self) -> tuple[str, list[Any]]:
        """The task's name and arguments (JSON), from which `job_of` makes this job again in the worker."""

    @property
    @abstractmethod
    def key(self) -> str:
        """Where it is kept in the blob store (and its name on the change feed and in `catalog.renders`)."""

    kind: ClassVar[str]  # `thumbnail` or `rendition`, for log lines and messages

    @property
    @abstractmethod
    def label(self) -> str:
        """Which one of its kind, for log lines: `512.webp`, `w:400.avif`."""

    @property
    @abstractmethod
    def ext(self) -> str: ...

    @abstractmethod
    def render(self, processor: Processor, original: IO[bytes]) -> bytes:
        """Its bytes, rendered in the processor's sandbox (ProcessingFailed, TimeLimitExceeded, ChildDied)."""


@dataclass(frozen=True)
class ThumbnailJob(RenderJob):
    size: int
    format: str  # the extension: jpg, webp

    @property
    def task(self) -> tuple[str, list[Any]]:
        return RENDER_TASK, [self.image_id, self.size, self.format]

    @property
    def key(self) -> str:
        return blob_keys.thumbnail(self.image_id, self.size, self.format)

    kind = "thumbnail"

    @property
    def label(self) -> str:
        return f"{self.size}.{self.format}"

    @property
    def ext(self) -> str:
        return self.format

    def render(self, processor: Processor, original: IO[bytes]) -> bytes:
        settings, fmt = processor.settings, OUTPUTS[self.format][0]
        return processor.sandbox.render_variant(
            original, processor.options, settings.task_time_limit, self.size, fmt).data


@dataclass(frozen=True)
class RenditionJob(RenderJob):
    name: str  # `Rendition.key`: canonical options and a concrete format, `fit:cover/h:300/w:400.avif`

    @property
    def task(self) -> tuple[str, list[Any]]:
        return RENDITION_TASK, [self.image_id, self.name]

    @property
    def key(self) -> str:
        return blob_keys.rendition(self.image_id, self.name)

    kind = "rendition"

    @property
    def label(self) -> str:
        return self.name

    @property
    def ext(self) -> str:
        return self.name.rpartition(".")[2]

    def render(self, processor: Processor, original: IO[bytes]) -> bytes:
        """The canonical name parses to the rendition it names; the focal point is the image's stored one, read
        only where `g:focal` asks for it."""
        stem = self.name.rpartition(".")[0]
        rendition = parse([] if stem == "plain" else stem.split("/"), self.ext)
        focal = self._focal_point(processor) if rendition.gravity == "focal" else None
        settings = processor.settings
        return processor.sandbox.render_rendition(
            original, processor.options, settings.task_time_limit, rendition, settings.max_rendition_pixels, focal
        ).data

    def _focal_point(self, processor: Processor) -> Mapping[str, float] | None:
        record = processor.storage.catalog.images.get(self.image_id)
        found = (record.image_metadata or {}).get("focal_point") if record is not None else None
        return found if isinstance(found, Mapping) else None


JOBS: dict[str, type[ThumbnailJob] | type[RenditionJob]] = {RENDER_TASK: ThumbnailJob, RENDITION_TASK: RenditionJob}


def job_of(task: str, args: list[Any]) -> RenderJob:
    """The job a render task's message names (its task's name and arguments)."""
    return JOBS[task](*args)
