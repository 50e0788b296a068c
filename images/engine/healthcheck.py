"""The engine image's HEALTHCHECK: GET /health/live of the role this container runs.

The roles listen on different ports by default (api 8080, ingest 8081, processor 8082,
archiver 8083, dev 8080) and a HEALTHCHECK is one command for every role, so the role and
any ``--port`` flag are read from the container's command line (``/proc/1/cmdline``; with
``docker run --init`` PID 1 is the init, whose arguments hold the same command). The port is
then the flag's, else ``RECO_PORT``, else that role's default, as ``reco`` itself chooses it.
One-shot commands (``train``, ``rebuild``, ...) serve nothing: healthy while they run.

Exit 0 healthy, 1 unhealthy (Docker's convention); stdlib only besides ``reco.settings``.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from reco.settings import (
    ApiSettings,
    ArchiverSettings,
    EmbeddedSettings,
    HttpSettings,
    IngestSettings,
    ProcessorSettings,
)

SERVERS: dict[str, type[HttpSettings]] = {
    "dev": EmbeddedSettings,
    "ingest": IngestSettings,
    "processor": ProcessorSettings,
    "archiver": ArchiverSettings,
    "api": ApiSettings,
}
ONE_SHOT = {"train", "tune", "rebuild", "replay", "eval"}


def command_line() -> list[str]:
    with open("/proc/1/cmdline", "rb") as f:
        return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]


def target(args: list[str]) -> tuple[str, int] | None:
    """(role, port) of the server the command runs, or None for a command without one."""
    for i, arg in enumerate(args):
        if arg in ONE_SHOT:
            return None
        if arg in SERVERS:
            port = _flag(args[i + 1 :], "--port") or os.environ.get("RECO_PORT")
            if port is None:
                port = str(SERVERS[arg].model_fields["port"].default)
            return arg, int(port)
    return None


def _flag(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def main() -> int:
    found = target(command_line())
    if found is None:
        print("no server role in this container's command: nothing to check")
        return 0
    role, port = found
    # 127.0.0.1 reaches a role bound to 0.0.0.0 (the production roles' default) and one
    # bound to the loopback (reco dev's default).
    url = f"http://127.0.0.1:{port}/health/live"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            print(f"{role}: {url} answered {response.status}")
            return 0
    except (urllib.error.URLError, OSError) as exc:
        print(f"{role}: {url} failed: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
