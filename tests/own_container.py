"""The container image, built and run here without a registry or a container runtime (../shared/containers.md).

- `base_image`: debian:bookworm-slim made locally (`debootstrap --variant=minbase bookworm`, `podman import`),
  kept between runs as a tarball under /var/tmp keyed by its recipe (and remade after a week), so CI on a clean
  machine makes it from nothing and later runs skip the ~30 s debootstrap. The image is tagged with the key,
  never as docker.io/library/debian: a real image of that name on a developer's machine is left alone.
- `build`: `podman build --isolation chroot` of the Containerfile with this checkout as its context, pip inside
  reaching the registry through this machine's CA bundle and reusing this machine's pip cache (both mounted
  for the build only: nothing of it is in the image).
- `Rootfs` and `Container`: the built image's filesystem exported to a folder, and the image's own entrypoint,
  command, user, working directory and environment run in it under chroot, in private mount and PID namespaces
  (`podman run` cannot set resource limits inside this sandbox).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from live import Service, descendants
from own_shipping import REPO, sh

MIRROR = "http://deb.debian.org/debian"
# debootstrap's output made to look like the published slim image: its apt sources, and no package lists.
SLIM = f"""
printf 'Types: deb\\nURIs: {MIRROR}\\nSuites: bookworm bookworm-updates\\nComponents: main\\nSigned-By: \
/usr/share/keyrings/debian-archive-keyring.gpg\\n\\nTypes: deb\\nURIs: http://deb.debian.org/debian-security\\n\
Suites: bookworm-security\\nComponents: main\\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\\n' \
> etc/apt/sources.list.d/debian.sources
rm -f etc/apt/sources.list
rm -rf var/lib/apt/lists/* var/cache/apt/*
"""
RECIPE = f"debootstrap --variant=minbase bookworm {MIRROR}\n{SLIM}"
CACHE = Path(os.environ.get("APERCU_CONTAINER_CACHE", "/var/tmp/apercu-container-cache"))
BASE_MAX_AGE = 7 * 86400  # seconds: a week-old base is made again (the build's apt-get upgrades nothing)
TOOLS = ("podman", "podman-compose", "debootstrap", "unshare", "chroot", "mount")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def base_image() -> str:
    """The local debian:bookworm-slim's tag, made (or imported from the cache) if podman does not have it."""
    key = hashlib.sha256(RECIPE.encode()).hexdigest()[:16]
    tag = f"localhost/apercu-base:bookworm-slim-{key}"
    tarball = CACHE / f"bookworm-slim-{key}.tar"
    fresh = tarball.is_file() and time.time() - tarball.stat().st_mtime < BASE_MAX_AGE
    if fresh and subprocess.run(["podman", "image", "exists", tag]).returncode == 0:
        return tag
    if not fresh:
        make_base(tarball)
    sh(["podman", "import", str(tarball), tag])
    return tag


def make_base(tarball: Path) -> None:
    """debootstrap into a temporary folder, slimmed, packed into `tarball` (written whole, then renamed)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=CACHE))
    try:
        sh(["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR])
        sh(["sh", "-c", SLIM], cwd=root)
        partial = tarball.with_suffix(".partial")
        sh(["tar", "-C", str(root), "-cf", str(partial), "."])
        partial.rename(tarball)
    finally:
        sh(["rm", "-rf", "--one-file-system", str(root)])


def build(base: str, tag: str, workdir: Path) -> None:
    """`podman build` of the Containerfile, this checkout as its context, on `base`."""
    mounts = []
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if ca.is_file():  # pip inside the build trusts what this machine trusts (a proxy's CA)
        conf = workdir / "build-pip.conf"
        conf.write_text("[global]\ncert = /run/host-ca.crt\n")
        mounts += ["-v", f"{ca}:/run/host-ca.crt:ro", "-v", f"{conf}:/etc/pip.conf:ro"]
    pip_cache = Path(os.environ.get("PIP_CACHE_DIR") or Path.home() / ".cache" / "pip")
    pip_cache.mkdir(parents=True, exist_ok=True)
    mounts += ["-v", f"{pip_cache}:/root/.cache/pip"]
    sh([
        "podman", "build", "--format", "docker", "--pull=never", "--isolation", "chroot",
        "--cgroup-manager=cgroupfs", "--build-arg", f"BASE={base}", *mounts, "-f", str(REPO / "Containerfile"),
        "-t", tag, str(REPO),
    ])  # fmt: skip


def image_config(tag: str) -> dict[str, Any]:
    """The image's Config (Entrypoint, Cmd, User, WorkingDir, Env...) with its Healthcheck, which podman keeps
    beside it."""
    config = json.loads(sh(["podman", "image", "inspect", "--format", "{{json .Config}}", tag]))
    health = json.loads(sh(["podman", "image", "inspect", "--format", "{{json .HealthCheck}}", tag]))
    return {**config, "Healthcheck": health}


def image_size(tag: str) -> int:
    return int(sh(["podman", "image", "inspect", "--format", "{{.Size}}", tag]).strip())


@dataclass
class Rootfs:
    """An image's filesystem, exported into `path`, and its configuration."""

    path: Path
    config: dict[str, Any]

    @classmethod
    @contextlib.contextmanager
    def export(cls, tag: str, where: Path) -> Iterator[Rootfs]:
        container = sh(["podman", "create", tag]).strip()
        try:
            where.mkdir()
            sh(["sh", "-c", f"podman export {container} | tar -x -C {shlex.quote(str(where))}"])
            where.chmod(0o755)
            yield cls(where, image_config(tag))
        finally:
            subprocess.run(["podman", "rm", "-v", container], capture_output=True)
            subprocess.run(["rm", "-rf", "--one-file-system", str(where)], capture_output=True)

    def user(self) -> tuple[int, int]:
        """The uid and gid of the image's User, read from its own /etc/passwd."""
        name = self.config["User"]
        for line in (self.path / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name or fields[2] == name:
                return int(fields[2]), int(fields[3])
        raise AssertionError(f"user {name!r} not in the image")

    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.config.get("Env") or [])


class Container(Service):
    """A role of the image run as its runtime would: `args` after the image's entrypoint (its Cmd when None), the
    image's environment with `env` over it, as its user, in its working directory, with `volume` (a folder of
    the host) at /data. `Service`'s probes and client reach it over loopback: it shares the host's network."""

    def __init__(self, rootfs: Rootfs, volume: Path, env: dict[str, str], args: list[str] | None = None) -> None:
        super().__init__(volume)
        self.rootfs, self.args = rootfs, args
        self.env = {**rootfs.env(), "APERCU_PORT": str(self.port), **env}  # what runs inside, and only that

    def command(self, role: str) -> list[str]:
        root = self.rootfs.path
        uid, gid = self.rootfs.user()
        os.chown(self.data_dir, uid, gid)
        argv = [*self.rootfs.config["Entrypoint"], *(self.rootfs.config["Cmd"] if self.args is None else self.args)]
        inner = f"cd {shlex.quote(self.rootfs.config['WorkingDir'])} && exec env -i " + shlex.join(
            [*(f"{k}={v}" for k, v in self.env.items()), *argv]
        )
        q = shlex.quote
        setup = (
            f"mount --bind /dev {q(f'{root}/dev')} && mount -t tmpfs tmpfs {q(f'{root}/dev/shm')} && "
            f"mount --bind {q(str(self.data_dir))} {q(f'{root}/data')} && "
            f"exec chroot --userspec={uid}:{gid} {q(str(root))} /bin/sh -c {q(inner)}"
        )
        return ["unshare", "-m", "-p", "-f", "--propagation", "private", f"--mount-proc={root}/proc", "sh", "-c", setup]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> list[int]:
        """`sig` to the namespace's first process (the image's entrypoint: tini, which passes it on), SIGKILL to it
        after `timeout`, which ends every process in the namespace; the exit codes of the entrypoints."""
        codes = []
        for proc in self.processes:
            init = first_child(proc.pid)
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(init, sig)  # type: ignore[arg-type]
            try:
                codes.append(proc.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, TypeError):
                    os.kill(init, signal.SIGKILL)  # type: ignore[arg-type]
                codes.append(proc.wait(timeout=timeout))
        self.processes = []
        return codes

    def run_inside(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command in the image's filesystem as its user, with this container's environment (a health check)."""
        uid, gid = self.rootfs.user()
        inner = "exec env -i " + shlex.join([*(f"{k}={v}" for k, v in self.env.items()), *argv])
        return subprocess.run(
            ["chroot", f"--userspec={uid}:{gid}", str(self.rootfs.path), "/bin/sh", "-c", inner],
            capture_output=True, text=True, timeout=timeout,
        )


def first_child(pid: int) -> int | None:
    """The child of `unshare -f`: the first process of the new PID namespace."""
    return next((child for child, parent, _ in descendants(pid) if parent == pid), None)


def compose_services(path: Path) -> dict[str, Any]:
    """compose.yaml's services as Debian's podman-compose reads them (anchors merged, ${VARIABLES} substituted,
    defaults applied): what `podman-compose up` would run. AssertionError if it cannot read the file."""
    script = (
        "import json, sys, podman_compose as pc\n"
        "c = pc.podman_compose\n"  # the instance its commands are registered on
        "sys.argv = ['podman-compose', '--dry-run', '-f', sys.argv[1], 'ps']\n"
        "c._parse_args(); c._parse_compose_file()\n"
        "print(json.dumps(c.services, default=sorted))\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "S3_SECRET")}
    return dict(json.loads(sh(["/usr/bin/python3", "-c", script, str(path)], timeout=60, env=clean)))
