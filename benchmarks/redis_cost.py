"""Redis time spent on a piece of work, from the server's own counters.

Two independent figures, each a difference of counters read before and after the work:

- **commands** (``INFO commandstats``): the ``usec`` of the commands clients sent. A script's
  ``usec`` (``EVAL``, ``EVALSHA``, ``FCALL`` ...) includes the commands it calls, and Redis
  counts those again under their own names, so only top-level calls are summed: which of a
  command's calls came from a script is learnt from ``MONITOR`` during a short calibration
  of the same work (:func:`calibrate`), and that share of its ``usec`` is left out. Commands
  of the measurement itself (``INFO``, ``MONITOR``) are left out too. This is time inside
  command handlers: reading requests, writing replies and the event loop are not in it.
- **cpu** (``INFO cpu``, ``used_cpu_user + used_cpu_sys`` of the server's main process):
  everything Redis spent in the interval, network I/O and its periodic jobs included, for
  every client. It is the larger figure and the one that caps throughput.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis

# Scripts and functions: their usec includes the commands they call.
SCRIPT_COMMANDS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})
# The measurement's own commands.
OWN_COMMANDS = frozenset({"info", "monitor"})


@dataclass(frozen=True)
class Snapshot:
    usec: dict[str, int]
    calls: dict[str, int]
    cpu_s: float


@dataclass
class Calibration:
    """Calls per command name seen at top level and from inside scripts."""

    top: Counter[str] = field(default_factory=Counter)
    inner: Counter[str] = field(default_factory=Counter)

    def inner_share(self, name: str) -> float:
        """The share of ``name``'s calls made by scripts; 0 for a name never seen (it is
        counted in full rather than risk leaving out top-level work)."""
        total = self.top[name] + self.inner[name]
        return self.inner[name] / total if total else 0.0


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, protocol=2, socket_timeout=30)


def snapshot(r: redis.Redis) -> Snapshot:
    stats = cast(dict[str, dict[str, Any]], r.info("commandstats"))
    cpu = r.info("cpu")
    usec: dict[str, int] = {}
    calls: dict[str, int] = {}
    for key, value in stats.items():
        name = key.removeprefix("cmdstat_")
        usec[name] = int(value["usec"])
        calls[name] = int(value["calls"])
    return Snapshot(usec, calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))


def _base(name: str) -> str:
    """``client|setname`` -> ``client``: MONITOR shows the command, not the subcommand."""
    return name.split("|", 1)[0]


def command_usec(before: Snapshot, after: Snapshot, calibration: Calibration) -> float:
    """Microseconds of top-level commands between the two snapshots."""
    total = 0.0
    for name, usec in after.usec.items():
        base = _base(name)
        if base in OWN_COMMANDS:
            continue
        spent = float(usec - before.usec.get(name, 0))
        if spent and base not in SCRIPT_COMMANDS:
            spent *= 1.0 - calibration.inner_share(base)
        total += spent
    return total


def cpu_usec(before: Snapshot, after: Snapshot) -> float:
    return (after.cpu_s - before.cpu_s) * 1e6


def calibrate(url: str, work: Callable[[], object]) -> Calibration:
    """Run ``work`` under ``MONITOR`` and count which calls came from scripts. MONITOR slows
    Redis down: this is for a short sample of the work, never the measured run."""
    seen = Calibration()
    monitor = redis.Redis.from_url(url, protocol=2, socket_timeout=30)
    connection = monitor.connection_pool.get_connection()
    connection.send_command("MONITOR")  # type: ignore[no-untyped-call]
    if connection.read_response() not in (b"OK", "OK"):
        raise RuntimeError("MONITOR refused")
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set() or connection.can_read(timeout=0):
            if not connection.can_read(timeout=0.1):
                continue
            line = connection.read_response()
            _count(seen, line.decode(errors="replace") if isinstance(line, bytes) else line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        work()
    finally:
        stop.set()
        reader.join(10)
        connection.disconnect()  # type: ignore[no-untyped-call]
        monitor.close()
    return seen


def _count(seen: Calibration, line: str) -> None:
    """One MONITOR line: ``<time> [<db> <client>] "CMD" "arg" ...``; ``<client>`` is ``lua``
    for a command a script called."""
    head, sep, command = line.partition("] ")
    if not sep or not command.startswith('"'):
        return
    name = command[1:].split('"', 1)[0].lower()
    (seen.inner if head.endswith(" lua") else seen.top)[name] += 1
