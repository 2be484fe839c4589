"""The container image (Containerfile) and compose.yaml, built and run here as ../shared/containers.md says:
podman builds the image on a debian:bookworm-slim made locally, and its exported filesystem runs the image's own
entrypoint and command under chroot (`own_container`). The image serves an upload by default (`apercu serve`),
and the compose file's migrate, web and worker services, run with exactly its commands and settings (addresses
and keys aside: the test's PostgreSQL, Redis and SeaweedFS), take one through PostgreSQL, Redis and S3.

Slow (a build: about a minute with warm caches, a few without), so one image and one export serve every test."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REQUIRE_SERVICES, unavailable
from own_container import Container, Rootfs, base_image, build, compose_services, image_size, missing_tools
from own_shipping import REPO, exercise, sh
from seaweed import find_weed

# The first test also waits for the base image and the build: minutes on a cold, loaded machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]
ROLES = ("migrate", "web", "worker")  # compose's services that run the image: one environment for all


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if missing := missing_tools():
        unavailable(f"cannot build the image without {', '.join(missing)} (`make test` installs them)", REQUIRE_SERVICES)
    tag = f"localhost/apercu-test:{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    base = base_image()
    made = time.monotonic()
    build(base, tag, tmp_path_factory.mktemp("build"))
    print(f"\nbase image: {made - started:.0f} s; build: {time.monotonic() - made:.0f} s; "
          f"image: {image_size(tag) / 1e6:.0f} MB")
    try:
        yield tag
    finally:
        subprocess.run(["podman", "rmi", "--force", tag], capture_output=True)
        # The build's cached layers speed up the next run; those no image uses for a day go.
        subprocess.run(["podman", "image", "prune", "--force", "--filter", "until=24h"], capture_output=True)


@pytest.fixture(scope="module")
def rootfs(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rootfs]:
    with Rootfs.export(image, tmp_path_factory.mktemp("export") / "root") as exported:
        yield exported


def test_the_image_runs_apercu_as_a_user_with_its_data_in_a_volume(rootfs: Rootfs) -> None:
    config = rootfs.config
    assert config["Entrypoint"][-1] == "apercu" and config["Cmd"] == ["serve"]
    assert rootfs.user()[0] != 0 and config["User"] == "apercu"
    assert "/data" in config["Volumes"] and "5000/tcp" in config["ExposedPorts"]
    assert rootfs.env()["APERCU_DATA_DIR"] == "/data" and config["WorkingDir"] == "/data"
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert not (rootfs.path / "opt/apercu/bin/pip").exists() and not (rootfs.path / "src").exists()  # build stage only


def test_the_image_serves_an_upload_by_default(rootfs: Rootfs, tmp_path: Path) -> None:
    """Its entrypoint and command as they are; only the address is the test's (loopback, a free port)."""
    container = Container(rootfs, tmp_path / "volume", {"APERCU_HOST": "127.0.0.1"}).start("serve")
    try:
        exercise(container)
        health = container.run_inside(rootfs.config["Healthcheck"]["Test"][1:])
        assert health.returncode == 0, health.stderr
        assert (tmp_path / "volume" / "catalog.sqlite").stat().st_uid == rootfs.user()[0]  # written as its user
    finally:
        assert container.stop() == [0]
    assert container.run_inside(rootfs.config["Healthcheck"]["Test"][1:]).returncode != 0  # it can fail, too


def test_compose_services_take_an_upload_through_postgres_redis_and_s3(
    rootfs: Rootfs, postgres_url: str, redis_url: str, seaweedfs: Any, tmp_path: Path
) -> None:
    services = compose_services(REPO / "compose.yaml")
    env = services["web"]["environment"]
    assert all(services[role]["environment"] == env for role in ROLES)
    # libpq's default role is the OS user's name: inside, that is the image's user, so the URL names ours.
    database_url = postgres_url.replace("://", f"://{getpass.getuser()}@", 1) if "@" not in postgres_url else postgres_url
    s3_key = {name: env[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    assert services["seaweedfs"]["environment"] == s3_key  # the S3 server takes the key apercu is given
    ours = {"APERCU_DATABASE_URL": database_url, "APERCU_BROKER_URL": redis_url, **seaweedfs.env()}
    assert set(ours) - {"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"} <= set(env)
    # Compose's settings, with the test's addresses; loopback only, and a queue of its own on the shared Redis.
    settings = {**env, **ours, "APERCU_HOST": "127.0.0.1", "APERCU_QUEUE": f"test-{uuid.uuid4().hex[:8]}"}
    create_bucket(services["bucket"], seaweedfs)

    migrate = Container(rootfs, tmp_path / "migrate", settings, services["migrate"]["command"]).launch("migrate")
    assert migrate.processes[0].wait(timeout=120) == 0, migrate.log.read_text()[-3000:]
    web = Container(rootfs, tmp_path / "web", settings, services["web"]["command"])
    worker = Container(rootfs, tmp_path / "worker", settings, services["worker"]["command"])
    try:
        web.start("web")
        worker.launch("worker")
        web._wait_ready("/readyz/workers")  # a worker beats: the web says so
        done = exercise(web)
        assert f"originals/{done['id']}" in web.stored()  # in compose's bucket, under its prefix
        assert not (tmp_path / "web" / "catalog.sqlite").exists()  # the catalog is PostgreSQL
    finally:
        assert worker.stop() == [0] and web.stop() == [0]


def create_bucket(service: dict[str, Any], seaweedfs: Any) -> None:
    """Compose's `bucket` service: its command, run by this machine's weed against the test's SeaweedFS."""
    command = " ".join(service["command"]).replace("seaweedfs:9333", f"127.0.0.1:{seaweedfs.master}")
    weed = find_weed()
    assert weed is not None and service["entrypoint"] == ["/bin/sh", "-c"]
    path = f"{os.path.dirname(weed)}:{os.environ['PATH']}"
    assert "created bucket" in sh(["/bin/sh", "-c", command], env={**os.environ, "PATH": path}, timeout=120)
    assert shutil.which("weed", path=path)
