"""Shared fixtures: settings on a temporary data directory, the Flask app, the corpus, and real services.

Two environment variables turn skips into failures, and CI (.ci/run) sets both:
- APERCU_REQUIRE_SERVICES=1: PostgreSQL, Redis and RabbitMQ must answer;
- APERCU_REQUIRE_CORPUS=1: ../shared/corpus must be present.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from apercu.api import create_app  # noqa: E402
from apercu.config import Settings  # noqa: E402
from apercu.tasks import context_of  # noqa: E402

CORPUS = Path(os.environ.get("APERCU_CORPUS") or Path(__file__).resolve().parents[1].parent / "shared" / "corpus")
REQUIRE_CORPUS = os.environ.get("APERCU_REQUIRE_CORPUS") == "1"
REQUIRE_SERVICES = os.environ.get("APERCU_REQUIRE_SERVICES") == "1"
POSTGRES = os.environ.get("APERCU_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
REDIS = os.environ.get("APERCU_TEST_REDIS", "redis://127.0.0.1:6379/0")
RABBITMQ = os.environ.get("APERCU_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")


def unavailable(reason: str, required: bool) -> None:
    """Fail when the run requires the thing (CI), skip with the reason otherwise (a laptop)."""
    if required:
        pytest.fail(f"{reason} (required: this run set APERCU_REQUIRE_*)", pytrace=False)
    pytest.skip(reason)


def require_corpus() -> Path:
    if not (CORPUS / "MANIFEST.md").is_file():
        unavailable(f"image corpus not found at {CORPUS}", REQUIRE_CORPUS)
    return CORPUS


def require_service(name: str, host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        unavailable(f"{name} not reachable at {host}:{port}: {exc}", REQUIRE_SERVICES)


def corpus_files() -> list[Path]:
    """Every image of the corpus (not the ExifTool readings), or [] where the corpus is absent."""
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and "_exiftool" not in p.parts and p.suffix != ".md")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def app(settings: Settings) -> Any:
    app = create_app(settings)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def process(app: Any) -> Any:
    """Run the worker's processing code in this process for one image (the same code the task runs)."""
    processor = context_of(app.extensions["apercu"].celery).processor

    def run(image_id: str) -> None:
        processor.process(image_id, owner="test")

    return run


@pytest.fixture
def render(app: Any) -> Any:
    """Take the queued messages off the (embedded) broker and run the renders among them (thumbnail variants and
    renditions) for one image, as a worker would; returns the arguments after the id of each: (size, ext) of a
    variant, (name,) of a rendition. Other messages are dropped (tests process directly)."""
    from apercu.tasks.jobs import JOBS, job_of

    service = app.extensions["apercu"]

    def run(image_id: str) -> list[tuple[Any, ...]]:
        rendered = []
        with service.celery.connection_for_read() as conn:
            queue = conn.SimpleQueue(service.settings.queue)
            while True:
                try:
                    message = queue.get_nowait()
                except queue.Empty:
                    break
                message.ack()
                task, args = message.headers.get("task"), message.payload[0]
                if task in JOBS and args[0] == image_id:
                    context_of(service.celery).processor.render(job_of(task, args))
                    rendered.append(tuple(args[1:]))
            queue.close()
        return rendered

    return run


@contextlib.contextmanager
def _postgres_schema() -> Iterator[str]:
    """A fresh schema in the test database, dropped afterwards, as an APERCU_DATABASE_URL."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import sqlalchemy as sa

    schema = f"apercu_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL schema shared by the tests of one module."""
    with _postgres_schema() as url:
        yield url


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A PostgreSQL schema of this test's own, for tests that count rows."""
    with _postgres_schema() as url:
        yield url


@pytest.fixture(scope="module")
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS


@pytest.fixture(scope="module")
def rabbitmq_url() -> str:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    return RABBITMQ


def parse_json(response: Any) -> Any:
    """The body as JSON, asserting it is strict JSON (no NaN, no Infinity)."""
    text = response.get_data(as_text=True) if hasattr(response, "get_data") else response.text
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real S3 server (SeaweedFS) for the whole session: a `seaweed.SeaweedFS` with `.endpoint_url`,
    `.client()` (boto3), `.new_bucket()`, `.storage_url(bucket=None, prefix="")`, `.env()` and `.service_env()`.

    While it runs, this process's environment holds its dummy AWS credentials (so `S3BlobStore.connect`, and
    children started with os.environ, reach it) and none of a developer's own AWS profile or session."""
    with pytest.MonkeyPatch.context() as patch, running_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), patch) as server:
        yield server


@pytest.fixture
def own_seaweedfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A SeaweedFS of this test's own (the session's is shared, and this test kills it)."""
    with running_seaweedfs(tmp_path / "seaweedfs", monkeypatch) as server:
        yield server


@contextlib.contextmanager
def running_seaweedfs(directory: Path, patch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A SeaweedFS started in `directory`, with its dummy credentials set (and a developer's AWS profile unset)
    through `patch`; SIGKILLed at the end."""
    from seaweed import CREDENTIALS, UNSET, SeaweedFS, SeaweedUnavailable

    for name in UNSET:
        patch.delenv(name, raising=False)
    for name, value in CREDENTIALS.items():
        patch.setenv(name, value)
    try:
        server = SeaweedFS.start(directory)
    except SeaweedUnavailable as exc:
        unavailable(f"SeaweedFS (S3) unavailable: {exc}", REQUIRE_SERVICES)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(seaweedfs: Any) -> str:
    """A new, empty bucket on the session's SeaweedFS, for this test alone."""
    return str(seaweedfs.new_bucket())


@contextlib.contextmanager
def _own_server(make: Any, what: str) -> Iterator[Any]:
    """A server of `own_servers` made by `make()`, started, and stopped (SIGKILL is fine: it is the test's own)."""
    from own_servers import ServerUnavailable

    try:
        server = make()
        server.start()
    except ServerUnavailable as exc:
        unavailable(f"{what} cannot run here: {exc}", REQUIRE_SERVICES)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_postgres() -> Iterator[Any]:
    """A PostgreSQL cluster of this test's own (`own_servers.OwnPostgres`), to kill and start again. In a
    directory of its own under /tmp: pytest's temporary directories are closed to the `postgres` user."""
    from own_servers import OwnPostgres

    directory = Path(tempfile.mkdtemp(prefix="apercu-pg-"))
    try:
        with _own_server(lambda: OwnPostgres(directory), "PostgreSQL") as server:
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    """A Redis of this test's own (`own_servers.OwnRedis`) on a free port, to kill and start again."""
    from own_servers import OwnRedis

    with _own_server(lambda: OwnRedis(tmp_path), "Redis") as server:
        yield server
