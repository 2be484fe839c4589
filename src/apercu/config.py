"""One settings object, read from APERCU_* environment variables and overridden by CLI flags.

Every process of a deployment (web, worker, the embedded `serve`) builds its settings the same way, so the
environment is the one place where a deployment is described; `serve` passes its flags on to the worker it
starts through that same environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apercu.imaging.analyse import Options

MIB = 1024 * 1024
EXIFTOOL_TIMEOUT = 10.0  # seconds exiftool may take over one file's maker notes
CHOICES = {"gps": ("keep", "drop"), "dedup": ("off", "reuse"), "log_format": ("text", "json")}
BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class Settings:
    """The whole configuration. Field names are the environment names without the APERCU_ prefix."""

    data_dir: Path = Path("apercu-data")  # this process's own files: staging, and the embedded catalog and broker
    storage_url: str = ""  # where images are kept: empty (inside data_dir), file:///path or s3://bucket/prefix
    s3_endpoint_url: str = ""  # an S3-compatible server that is not AWS (MinIO, SeaweedFS, Ceph...)
    s3_presign: int = 0  # >0: thumbnails are answered with a redirect to an S3 URL valid this many seconds
    database_url: str = ""  # empty: SQLite catalog inside data_dir
    broker_url: str = ""  # empty: embedded SQLite broker inside data_dir
    queue: str = "apercu"
    host: str = "127.0.0.1"
    port: int = 5000
    web_workers: int = 2
    web_threads: int = 16
    web_connections: int = 1000  # open client connections per web worker process, stalled ones included
    request_timeout: float = 30.0  # seconds a client has to send a request (and to take its response)...
    request_min_rate: int = 16384  # ...plus one second per this many bytes of it received: then 408
    worker_concurrency: int = 0  # 0: one process per CPU
    max_upload_bytes: int = 50 * MIB
    max_pixels: int = 100_000_000
    thumbnail_size: int = 256
    thumbnail_sizes: str = "128,256,512"  # what ?size=N may ask for (the default size is always allowed)
    thumbnail_quality: int = 85
    thumbnail_background: str = "#ffffff"  # what transparency is flattened onto
    task_time_limit: float = 120.0
    max_attempts: int = 3
    broker_poll_interval: float = 0.02
    worker_memory_limit: int = 2048  # MiB of address space for each imaging process
    recovery_interval: int = 10
    recovery_grace: int = 300  # a pending image is re-sent only once it has waited this long
    orphan_interval: int = 3600  # seconds between sweeps for files without rows and rows without files
    orphan_grace: int = 3600  # what is younger than this is work in flight, never an orphan
    idempotency_ttl: int = 86400  # how long an Idempotency-Key keeps answering with its first image
    restart_backoff_max: int = 30  # `serve`: longest wait before restarting a half that keeps dying
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one JSON object per line
    metrics_port: int = 0  # >0: a worker also serves its own metrics on this port (for a worker without the web)
    api_keys: str = ""  # comma-separated; empty (and no api_keys_file): no key needed
    api_keys_file: str = ""  # one key per line
    public_thumbnails: bool = False  # thumbnails readable without a key when keys are set
    gps: str = "keep"  # or "drop": no GPS in stored or returned metadata
    max_pending: int = 0  # more images than this waiting: uploads get 503 + Retry-After (0: no limit)
    min_free_mb: int = 512  # less free space than this on the data disk: uploads get 507
    cors_origins: str = ""  # comma-separated origins allowed to call the API from a browser (off when empty)
    dedup: str = "off"  # or "reuse": an upload of bytes already stored answers 200 with the stored image
    exiftool: bool = False  # metadata.makernotes, read by ExifTool (`exiftool` on PATH) in the imaging process
    webhook_url: str = ""  # told of every image that reaches success or failure (beside an upload's callback_url)
    webhook_secret: str = ""  # the HMAC-SHA256 key of X-Apercu-Signature; webhooks need one
    webhook_allowed_hosts: str = ""  # comma-separated host names that may resolve to private addresses
    webhook_attempts: int = 8  # deliveries are tried this many times...
    webhook_backoff: float = 5.0  # ...waiting this long after the first failure, then twice as long each time

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read APERCU_<FIELD> variables, then apply non-None keyword overrides (CLI flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f"APERCU_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw, cls)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"])
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_env(self) -> dict[str, str]:
        """The environment that rebuilds these settings in a child process."""
        env = {}
        for f in fields(self):
            env[f"APERCU_{f.name.upper()}"] = str(getattr(self, f.name))
        return env

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'catalog.sqlite').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"apercu-sqlite+sqlite:///{(self.data_dir / 'broker.sqlite').resolve()}"

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url

    @property
    def webhook_hosts(self) -> frozenset[str]:
        """APERCU_WEBHOOK_ALLOWED_HOSTS as a set of host names, for the upload's check and each delivery's."""
        return frozenset(host.strip() for host in self.webhook_allowed_hosts.split(",") if host.strip())

    @property
    def sizes(self) -> tuple[int, ...]:
        try:
            sizes = {int(part) for part in self.thumbnail_sizes.split(",") if part.strip()}
        except ValueError:
            raise ValueError(f"APERCU_THUMBNAIL_SIZES={self.thumbnail_sizes!r} is not a list of integers") from None
        if any(not 16 <= size <= 4096 for size in sizes | {self.thumbnail_size}):
            raise ValueError("thumbnail sizes must be between 16 and 4096 px")
        return tuple(sorted(sizes | {self.thumbnail_size}))

    @property
    def background(self) -> tuple[int, int, int]:
        text = self.thumbnail_background.lstrip("#")
        if len(text) != 6:
            raise ValueError(f"APERCU_THUMBNAIL_BACKGROUND={self.thumbnail_background!r} is not #rrggbb")
        try:
            return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
        except ValueError:
            raise ValueError(f"APERCU_THUMBNAIL_BACKGROUND={self.thumbnail_background!r} is not #rrggbb") from None

    def imaging_options(self) -> Options:
        """The part of the settings the imaging functions take (they know nothing of this module)."""
        from apercu.imaging.analyse import Options

        return Options(
            thumbnail_size=self.thumbnail_size,
            thumbnail_quality=self.thumbnail_quality,
            max_pixels=self.max_pixels,
            background=self.background,
            exiftool=self.exiftool,
            # a file that keeps exiftool busy must leave the rest of imaging most of its time limit
            exiftool_timeout=min(EXIFTOOL_TIMEOUT, self.task_time_limit / 2),
        )

    def validate(self) -> Settings:
        """Raise ValueError now for settings that would otherwise fail on the first request."""
        self.sizes, self.background  # noqa: B018 - evaluated for their checks
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"APERCU_{name.upper()}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("APERCU_WEBHOOK_URL needs APERCU_WEBHOOK_SECRET: webhooks are always signed")
        for name in ("max_pending", "min_free_mb"):
            if getattr(self, name) < 0:
                raise ValueError(f"APERCU_{name.upper()}={getattr(self, name)} must not be negative")
        return self


def _convert(name: str, raw: str, cls: type[Settings]) -> Any:
    default = cls.__dataclass_fields__[name].default
    if isinstance(default, bool):
        if raw.strip().lower() not in BOOLEANS:
            raise ValueError(f"APERCU_{name.upper()}={raw!r} is not one of {', '.join(BOOLEANS)}")
        return BOOLEANS[raw.strip().lower()]
    try:
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"APERCU_{name.upper()}={raw!r} is not a valid {type(default).__name__}") from exc
    if isinstance(default, Path):
        return Path(raw)
    return raw
