"""The wheel, as a deployment installs it: `python -m build` of this checkout, installed with no extra in a fresh
virtual environment, holds only what the service needs at run time, names the extra a setting needs when it is
missing, and `apercu serve` from it takes an upload through to its thumbnail (its page's assets, templates and
migrations are inside it: nothing of this checkout is on its path).

The wheel is built once per run; pip installs from its own cache (and the registry for what is not in it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import Service
from own_shipping import REPO, exercise, normal, requirements, sh

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # the first test waits for the build
EXTRAS = ("postgres", "s3", "redis")
# What the extras bring besides their own requirements: none of it may come with the plain wheel either.
EXTRAS_PULL = {"psycopg-binary", "botocore", "s3transfer"}


class Installed(Service):
    """apercu as the wheel's console script in `venv` runs it."""

    def __init__(self, venv: Path, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.venv = venv

    def command(self, role: str) -> list[str]:
        return [str(self.venv / "bin" / "apercu"), role]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build` of this checkout (its sdist, then the wheel built from that sdist), and of the client
    library it requires (`clients/python`, not on the registry: pip finds it beside the wheel), once per run."""
    out = tmp_path_factory.mktemp("dist")
    sh([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)])
    sh([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(REPO / "clients" / "python")])
    (built,) = out.glob("apercu-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment with the wheel installed, no extra."""
    where = tmp_path_factory.mktemp("venv") / "apercu"
    sh([sys.executable, "-m", "venv", "--without-pip", str(where)])  # this run's pip installs into it: faster
    sh(pip(where, "install", "--quiet", "--find-links", str(wheel.parent), str(wheel)))
    yield where


def pip(venv: Path, *args: str) -> list[str]:
    """This environment's pip, acting on `venv` (which has none of its own: nothing but what the wheel needs)."""
    return [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), *args]


def installed(venv: Path) -> dict[str, str]:
    """Every distribution in `venv`, by normalised name: its version."""
    listed = sh(pip(venv, "list", "--format=json"))
    return {normal(d["name"]): d["version"] for d in json.loads(listed)}


def test_the_wheel_installs_what_runs_the_service_and_nothing_else(venv: Path) -> None:
    found = installed(venv)
    runtime = requirements()
    for name, requirement in runtime.items():
        assert name in found and requirement.specifier.contains(found[name]), (name, found.get(name))
    dev_tools = set(requirements("dev"))
    optional = {name for extra in EXTRAS for name in requirements(extra)} | EXTRAS_PULL
    assert not dev_tools & set(found), dev_tools & set(found)
    assert not optional & set(found), optional & set(found)
    assert "apercu" in found


def test_a_setting_that_needs_a_missing_extra_names_it(venv: Path, tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"], "APERCU_DATA_DIR": str(tmp_path / "data"),
        "APERCU_DATABASE_URL": "postgresql://127.0.0.1:5432/test", "APERCU_STORAGE_URL": "s3://bucket/images",
        "APERCU_BROKER_URL": "redis://127.0.0.1:6379/0",
    }
    done = subprocess.run([str(venv / "bin" / "apercu"), "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and len(lines) == 3, done.stderr
    for extra, variable in (("postgres", "APERCU_DATABASE_URL"), ("s3", "APERCU_STORAGE_URL"), ("redis", "APERCU_BROKER_URL")):
        assert any(variable in line and line.endswith(f"install apercu[{extra}]") for line in lines), (extra, lines)


def test_apercu_serve_from_the_wheel_takes_an_upload_through(venv: Path, tmp_path: Path) -> None:
    service = Installed(venv, tmp_path / "data").start("serve")
    try:
        exercise(service)
        assert (tmp_path / "data" / "catalog.sqlite").is_file()  # the migrations ran from the wheel
    finally:
        assert service.stop() == [0]
