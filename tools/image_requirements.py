"""Print the requirements of the project and of the extras named, one a line, from
pyproject.toml alone, after what building the project needs (``build-system.requires``).

The Dockerfiles in images/ install these before they copy the source, so that a change to
the code rebuilds only the image's last layer and not its dependencies; with the build
requirements in that layer too, the project installs without build isolation, so a code
change does not fetch setuptools again either.

Usage: python3 image_requirements.py pyproject.toml [EXTRA ...]

An extra that pyproject.toml does not define is reported on stderr and left out, as
``pip install '.[extra]'`` does. A requirement on the project itself (``reco-engine[a,b]``,
how one extra includes others) is replaced by those extras' requirements. Runs on the
image's bare Python: standard library only.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# PEP 508: a name, then optional extras in brackets, then anything (version, marker).
_SELF = re.compile(r"^\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    project = data["project"]
    own_name = _normalise(project["name"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    out: list[str] = []
    seen: set[str] = set()

    def add(lines: list[str]) -> None:
        for line in lines:
            found = _SELF.match(line)
            if found and _normalise(found.group(1)) == own_name:
                include([e.strip() for e in (found.group(2) or "").split(",") if e.strip()])
            elif line not in out:
                out.append(line)

    def include(names: list[str]) -> None:
        for name in names:
            if name in seen:
                continue
            seen.add(name)
            if name not in optional:
                print(f"image_requirements: pyproject.toml has no extra {name!r}", file=sys.stderr)
                continue
            add(optional[name])

    add(data.get("build-system", {}).get("requires", []))
    add(project.get("dependencies", []))
    include(extras)
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for line in requirements(Path(argv[0]), argv[1:]):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
