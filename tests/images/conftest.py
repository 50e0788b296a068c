"""The images tier's fixtures: podman, the stand-in for the official python base image, and
the engine and operator images built from images/*/Dockerfile, once per session.

The tier skips, with the reason, where it cannot run (not root, podman / runc / debootstrap
missing and not installable, podman unable to start); it never passes without building.
"""

from __future__ import annotations

import time

import pytest

from tests.support.podman import (
    REPO,
    Podman,
    PodmanError,
    build_base_tarball,
    dockerfile_base,
    qualified,
    why_not_available,
)

ENGINE_DOCKERFILE = REPO / "images" / "engine" / "Dockerfile"
OPERATOR_DOCKERFILE = REPO / "images" / "operator" / "Dockerfile"
ENGINE_TAG = "localhost/reco-engine:test"
OPERATOR_TAG = "localhost/reco-operator:test"


@pytest.fixture(scope="session")
def podman() -> Podman:
    reason = why_not_available()
    if reason is not None:
        pytest.skip(reason)
    client = Podman.create()
    try:
        client.info()
    except PodmanError as exc:
        pytest.skip(f"podman is installed but cannot run on this machine: {exc}")
    return client


@pytest.fixture(scope="session")
def base_image(podman: Podman) -> str:
    """Debian 12's Python, imported under the exact name of the Dockerfiles' default base
    (python:3.11.x-slim-bookworm, which no registry serves here), so that the tier builds
    the Dockerfiles users build, unchanged."""
    names = sorted(
        {qualified(dockerfile_base(f)) for f in (ENGINE_DOCKERFILE, OPERATOR_DOCKERFILE)}
    )
    started = time.monotonic()
    tarball, stamp = build_base_tarball()
    podman.import_base(tarball, stamp, names)
    print(f"base image {names} ready in {time.monotonic() - started:.0f} s")
    return names[0]


def _build(podman: Podman, dockerfile_name: str, tag: str) -> str:
    started = time.monotonic()
    podman.build(REPO / "images" / dockerfile_name / "Dockerfile", tag)
    print(f"built {tag} in {time.monotonic() - started:.0f} s")
    return tag


@pytest.fixture(scope="session")
def engine_image(podman: Podman, base_image: str) -> str:
    return _build(podman, "engine", ENGINE_TAG)


@pytest.fixture(scope="session")
def operator_image(podman: Podman, base_image: str) -> str:
    return _build(podman, "operator", OPERATOR_TAG)
