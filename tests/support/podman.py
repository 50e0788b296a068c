"""Podman for the test suite: build the project's Dockerfiles and run the images, for real.

There is no Docker engine on the machines that run the suite; Debian's podman builds and
runs the same Dockerfiles (TESTING.md, "Container images"). Everything podman stores (the
imported base image, the layer cache, the built images) lives under
``~/.cache/reco-engine/podman`` (``RECO_CACHE`` moves it), apart from any other podman use
of the machine, so that a second run reuses the layers and starts in seconds. The settings
that make podman work here are the suite's own ``tests/images/containers.conf``.

Nothing here is a mock; a step that fails raises :class:`PodmanError` with podman's output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# tests/support/podman.py -> the repository root.
REPO = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO / "tools"
CONTAINERS_CONF = REPO / "tests" / "images" / "containers.conf"
# Debian keeps runc and debootstrap in /usr/sbin, which a non-login PATH may lack.
SBIN = ("/usr/sbin", "/sbin")
TOOLS = ("podman", "runc", "debootstrap")
BASE_STAMP_LABEL = "io.reco-engine.test-base"
BUILD_TIMEOUT_S = 1800.0


class PodmanError(RuntimeError):
    """podman (or the base image's build) failed; the message holds its output."""


def cache_root() -> Path:
    return Path(os.environ.get("RECO_CACHE", Path.home() / ".cache" / "reco-engine"))


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found is None:
        for directory in SBIN:
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return found


def why_not_available() -> str | None:
    """Why the images tier cannot run on this machine, or None when it can."""
    if os.name != "posix" or os.geteuid() != 0:
        return (
            "the images tier needs root: debootstrap builds the base image and podman runs "
            "rootful here (no subuid set-up for rootless)"
        )
    missing = [tool for tool in TOOLS if find_tool(tool) is None]
    if missing:
        return (
            f"{', '.join(missing)} not installed; run `bash tools/install-podman.sh` as root "
            "(make test-deps does), which installs Debian's podman, runc and debootstrap"
        )
    return None


def qualified(name: str) -> str:
    """The full name Docker gives a short image name: ``python:3.11`` is
    ``docker.io/library/python:3.11``. Podman looks a local image up by this name."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"docker.io/{name}" if rest else f"docker.io/library/{name}"


def dockerfile_base(dockerfile: Path) -> str:
    """The default of the Dockerfile's ``ARG PYTHON_IMAGE``: the base users build on."""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if line.startswith("ARG PYTHON_IMAGE="):
            return line.split("=", 1)[1].strip().strip('"')
    raise PodmanError(f"{dockerfile} has no `ARG PYTHON_IMAGE=<default>` line")


@dataclass
class Podman:
    binary: str
    root: Path
    runroot: Path

    @classmethod
    def create(cls) -> Podman:
        binary = find_tool("podman")
        if binary is None:
            raise PodmanError("podman is not installed (tools/install-podman.sh)")
        base = cache_root() / "podman"
        # runroot holds run-time state only; it is kept at one path because podman records
        # it in its database and refuses another one for the same storage.
        return cls(binary, base / "storage", Path("/tmp/reco-engine-podman") / "run")

    def command(self, *args: str) -> list[str]:
        return [
            self.binary,
            "--root", str(self.root),
            "--runroot", str(self.runroot),
            "--tmpdir", str(self.runroot.parent / "libpod"),
            *args,
        ]  # fmt: skip

    def run(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
        env["PATH"] = os.pathsep.join([env.get("PATH", ""), *SBIN])
        result = subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise PodmanError(
                f"podman {' '.join(args[:3])} ... failed (exit {result.returncode}):\n"
                f"{_tail(result.stdout)}\n{_tail(result.stderr)}"
            )
        return result

    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run("info", "--format", "json").stdout)
        return data

    def image_id(self, name: str) -> str | None:
        result = self.run("image", "inspect", "--format", "{{.Id}}", name, check=False)
        if result.returncode != 0:
            return None
        return result.stdout.strip() or None

    def inspect_image(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.run("image", "inspect", name).stdout)
        return data[0]

    def import_base(self, tarball: Path, stamp: str, names: list[str]) -> None:
        """The debootstrap root filesystem as an image named ``names``, with the official
        python image's environment (PATH, LANG) and command. Skipped when an image of that
        stamp is there already: a new base id would void every cached layer above it."""
        current = [n for n in names if self._label(n, BASE_STAMP_LABEL) == stamp]
        if len(current) == len(names):
            return
        self.run(
            "import",
            "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change", "ENV LANG=C.UTF-8",
            "--change", f"LABEL {BASE_STAMP_LABEL}={stamp}",
            "--change", 'CMD ["python3"]',
            str(tarball),
            names[0],
            timeout=600,
        )  # fmt: skip
        for name in names[1:]:
            self.run("tag", names[0], name)

    def _label(self, image: str, label: str) -> str | None:
        if self.image_id(image) is None:
            return None
        labels = self.inspect_image(image).get("Labels") or {}
        value = labels.get(label)
        return str(value) if value is not None else None

    def build(self, dockerfile: Path, tag: str) -> str:
        """Build ``dockerfile`` with the repository root as its context; the image's id.

        ``--format docker`` keeps the HEALTHCHECK (the OCI format has none); ``--pull=never``
        builds on the imported base, never on a registry's; ``--network host`` lets pip in
        the build reach PyPI. The image the tag held before is removed when the build
        replaced it, so that repeated builds do not pile up copies of the venv layer; the
        layer cache (the builder stage's images) stays."""
        before = self.image_id(tag)
        self.run(
            "build",
            "--network", "host",
            "--format", "docker",
            "--pull=never",
            "--file", str(dockerfile),
            "--tag", tag,
            str(REPO),
            timeout=BUILD_TIMEOUT_S,
        )  # fmt: skip
        after = self.image_id(tag)
        if after is None:
            raise PodmanError(f"podman build reported success but {tag} does not exist")
        if before is not None and before != after:
            self.run("rmi", before, check=False)
        return after

    @contextmanager
    def container(self, image: str, *args: str, options: tuple[str, ...] = ()) -> Iterator[str]:
        """A detached container on the host's network (it serves on 127.0.0.1 like every
        test server); removed after, its log printed when the block raised."""
        # The healthcheck's timer needs systemd, which is not here: tests run it by hand.
        cid = self.run(
            "run", "--detach", "--network", "host", "--health-interval", "disable",
            *options, image, *args,
        ).stdout.strip()  # fmt: skip
        try:
            yield cid
        except BaseException:
            print(f"--- log of container {cid[:12]} ({image} {' '.join(args)}):")
            print(self.logs(cid))
            raise
        finally:
            self.run("rm", "--force", "--time", "5", cid, check=False)

    def logs(self, cid: str) -> str:
        result = self.run("logs", cid, check=False)
        return result.stdout + result.stderr

    def running(self, cid: str) -> bool:
        result = self.run("inspect", "--format", "{{.State.Running}}", cid, check=False)
        return result.stdout.strip() == "true"


def build_base_tarball() -> tuple[Path, str]:
    """``tools/build-base-image.sh``: the tarball (cached) and the stamp of what went in."""
    script = TOOLS_DIR / "build-base-image.sh"
    result = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, check=False, timeout=1200
    )
    if result.returncode != 0:
        raise PodmanError(f"{script} failed (exit {result.returncode}):\n{_tail(result.stderr)}")
    tarball = Path(result.stdout.strip().splitlines()[-1])
    stamp = (tarball.parent / ".complete").read_text(encoding="utf-8").strip()
    return tarball, stamp


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
