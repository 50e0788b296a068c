"""Real Kafka, Redis and PostgreSQL servers on 127.0.0.1 and free ports, for development,
benchmarks and tests.

Nothing here is a mock: each class starts the real server binary in its own temp directory,
waits until it answers, and can be stopped, killed and started again on the same data
directory and ports, so tests can restart a dependency in the middle of a stream.

Binaries come from the scripts in the repository's ``tools/`` (Kafka jars from Maven
Central, Redis and PostgreSQL from Debian), which install what is missing on a fresh machine
and are no-ops afterwards. The scripts are found next to this package in a checkout (an
editable install); an engine installed without the repository has none, and starting a
server says so. When something cannot be installed, a :class:`ServerError` says what is
missing; nothing is skipped silently.

Every server is a direct child of the Python process that started it: it is reaped when it
exits, and it dies with that process (``PR_SET_PDEATHSIG``, plus an ``atexit`` hook that
stops servers still running), so a crashed run leaves nothing behind. Start servers
from the main thread, since the kernel ties that signal to the thread that started them.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import functools
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

from reco.local.exceptions import ServerError

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

__all__ = [
    "LOOPBACK",
    "KafkaServer",
    "PostgresServer",
    "RedisServer",
    "ServerError",
    "free_port",
    "free_ports",
    "tools_dir",
]

logger = logging.getLogger(__name__)

# services/reco/local/servers.py -> the repository root, in a checkout.
REPO_ROOT = Path(__file__).resolve().parents[3]
LOOPBACK = "127.0.0.1"
KEEP_DIRS_ENV = "RECO_KEEP_SERVER_DIRS"


def tools_dir() -> Path:
    """The repository's ``tools/`` with the install scripts, or a :class:`ServerError` that
    says to run from a checkout when the engine was installed without one."""
    tools = REPO_ROOT / "tools"
    if not (tools / "install-kafka.sh").is_file() or not (tools / "install-services.sh").is_file():
        raise ServerError(
            f"the local servers are installed by the tools/ scripts of a reco-engine checkout, "
            f"and there is none at {REPO_ROOT} (this engine was installed without its "
            f"repository): clone the repository, `pip install -e .` it, and run from there"
        )
    return tools


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free ports; the sockets stay open until all are picked."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _run_tool(args: list[str], what: str) -> str:
    """Run a ``tools/`` script and return its stdout, or raise with its stderr."""
    try:
        result = subprocess.run(args, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ServerError(f"cannot run {args[0]} to get {what}: {exc}") from exc
    if result.returncode != 0:
        raise ServerError(
            f"{' '.join(args)} failed (exit {result.returncode}) while getting {what}:\n"
            f"{result.stderr.strip()[-4000:]}"
        )
    return result.stdout


@functools.cache
def kafka_libs() -> Path:
    """Directory of the Kafka broker jars, fetched into the cache on first use."""
    started = time.monotonic()
    out = _run_tool(["bash", str(tools_dir() / "install-kafka.sh")], "the Kafka broker jars")
    libs = Path(out.strip().splitlines()[-1])
    if not libs.is_dir():
        raise ServerError(f"install-kafka.sh printed {libs}, which is not a directory")
    logger.info("Kafka jars in %s (%.1fs)", libs, time.monotonic() - started)
    return libs


@functools.cache
def _service_paths(component: str) -> dict[str, str]:
    out = _run_tool(
        ["bash", str(tools_dir() / "install-services.sh"), component], f"the {component} server"
    )
    pairs = (line.split("=", 1) for line in out.splitlines() if "=" in line)
    return dict(pairs)


def redis_server_binary() -> str:
    """Path of ``redis-server``, installing Debian's package if it is missing."""
    return _service_paths("redis")["redis-server"]


def redis_cli_binary() -> str:
    """Path of ``redis-cli`` (it creates a Redis Cluster), installed like the server."""
    return _service_paths("redis")["redis-cli"]


def postgres_bindir() -> Path:
    """Directory holding ``initdb``, ``pg_ctl`` and ``postgres`` (Debian keeps it off PATH)."""
    return Path(_service_paths("postgres")["pg-bindir"])


def java_binary() -> str:
    """The ``java`` to run the broker with: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise ServerError("java not found: the Kafka broker needs a JDK >= 17 on PATH or JAVA_HOME")
    return found


_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _die_with_parent(sig: signal.Signals) -> None:
    """Ask the kernel to send ``sig`` to this child when the process that started it dies."""
    _prctl(_PR_SET_PDEATHSIG, sig)


@contextlib.contextmanager
def _adopting_orphans() -> Iterator[None]:
    """Make orphaned descendants our children (not init's) while the block runs.

    Some machines' init never reaps orphans, so killed grandchildren would stay zombies.
    """
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    try:
        yield
    finally:
        _prctl(_PR_SET_CHILD_SUBREAPER, 0)


def tail(path: Path, lines: int = 40) -> str:
    """Last lines of a log file, for error messages."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return f"(no {path})"
    return "\n".join(text.splitlines()[-lines:])


_live_servers: weakref.WeakSet[_Server] = weakref.WeakSet()


@atexit.register
def _close_live_servers() -> None:
    for server in list(_live_servers):
        try:
            server.close()
        except Exception:
            logger.exception("could not close %r at exit", server)


class _Server:
    """Common life cycle: a temp run dir, a child process, start/stop/kill/close.

    Subclasses give the command line in :meth:`_command` and say when it answers in
    :meth:`_ready`. ``start()`` after ``stop()`` or ``kill()`` reuses the run dir and ports.
    """

    name = "server"
    stop_timeout = 30.0
    stop_signal: signal.Signals = signal.SIGTERM
    parent_death_signal: signal.Signals = signal.SIGKILL

    def __init__(self, *, base_dir: str | Path | None = None, start_timeout: float = 60.0) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"reco-{self.name}-", dir=base_dir))
        self.start_timeout = start_timeout
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """File that holds what the server logs, shown when it fails to start."""
        return self.run_dir / "output.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the server (no-op when it runs) and wait until it answers."""
        if self.running:
            return self
        started = time.monotonic()
        self._prepare()
        # Before the log is opened: finding the binary may fail, and would leak the handle.
        command = self._command()
        self._output = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            cwd=self.run_dir,
            start_new_session=True,
            preexec_fn=functools.partial(_die_with_parent, self.parent_death_signal),
            **self._popen_options(),
        )
        _live_servers.add(self)
        try:
            self._wait_ready(started)
            self._after_start()
        except BaseException:
            self.kill()
            raise
        self.startup_seconds = time.monotonic() - started
        logger.info("%s ready at %s in %.1fs", self.name, self.address, self.startup_seconds)
        return self

    def stop(self) -> None:
        """Stop gracefully (``stop_signal``), then SIGKILL after ``stop_timeout`` seconds."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused server cannot act on stop_signal
            proc.send_signal(self.stop_signal)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0fs; killing it", self.name, self.stop_timeout)
                self.kill()
        self._forget_process()

    def kill(self) -> None:
        """Kill at once (SIGKILL), as a crash would."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._forget_process()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): its sockets stay open and the kernel still accepts
        connections and data, but nothing is answered; the hang a client cannot tell from
        a slow server, which only its own timeouts bound."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a paused server (SIGCONT); it answers what queued up meanwhile."""
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise ServerError(f"{self.name} is not running")
        proc.send_signal(sig)

    def close(self) -> None:
        """Stop and remove the run dir (kept when ``RECO_KEEP_SERVER_DIRS`` is set)."""
        self.stop()
        _live_servers.discard(self)
        if os.environ.get(KEEP_DIRS_ENV):
            logger.info("keeping %s run dir %s", self.name, self.run_dir)
        else:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    @property
    def address(self) -> str:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write config and initialise storage; called before every start."""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _popen_options(self) -> dict[str, Any]:
        """Extra ``subprocess.Popen`` arguments, e.g. the OS user to run as."""
        return {}

    def _ready(self) -> bool:
        raise NotImplementedError

    def _after_start(self) -> None:
        """Work that needs the running server, e.g. creating a database on first start."""

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.start_timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with code {self._proc.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self._failure_log()}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.name} did not answer at {self.address} within "
                    f"{self.start_timeout:.0f}s; last lines of {self.log_path}:\n"
                    f"{self._failure_log()}"
                )
            time.sleep(0.1)

    def _failure_log(self) -> str:
        return tail(self.log_path)

    def _forget_process(self) -> None:
        self._proc = None
        if self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.address} {state} {self.run_dir}>"


class ServerGroup:
    """Servers started, waited for and closed as one (a Redis Cluster, a Redis watched by
    Sentinels). Subclasses list them in :meth:`servers` (closed in that order), start them
    in :meth:`start` and say what state they are in, for errors, in :meth:`_describe`."""

    name = "servers"

    def __init__(self, *, start_timeout: float) -> None:
        self.start_timeout = start_timeout
        self.startup_seconds: float | None = None

    def servers(self) -> Sequence[_Server]:
        raise NotImplementedError

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        for server in self.servers():
            server.close()

    def _describe(self) -> str:
        raise NotImplementedError

    def _wait(self, predicate: Callable[[], Any], what: str, timeout_s: float | None) -> None:
        """Poll ``predicate`` until true, for ``timeout_s`` (None: ``start_timeout``)."""
        deadline = time.monotonic() + (self.start_timeout if timeout_s is None else timeout_s)
        while not predicate():
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name} not {what} in time:\n{self._describe()}")
            time.sleep(0.05)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def random_cluster_id() -> str:
    """A KRaft cluster id as ``StorageTool random-uuid`` makes it, without a JVM start."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


_KAFKA_LOG4J2 = """\
Configuration:
  status: warn
  Appenders:
    File:
      name: file
      fileName: "{log}"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: file
"""


class KafkaServer(_Server):
    """A single-node KRaft Kafka broker (broker and controller in one JVM).

    Topics are not auto-created (``auto_create_topics=False`` by default) so that a typo in a
    topic name fails a test instead of silently creating a topic; tests create their own.
    Offsets and transaction topics have one partition and replication 1, and the first
    consumer group rebalances without delay, so a first consumer is fast. A short broker
    session (4 s instead of 9 s) lets a broker restarted after ``kill()`` be unfenced sooner:
    the controller first waits for the killed incarnation's session to expire.
    """

    name = "kafka"

    def __init__(
        self,
        *,
        base_dir: str | Path | None = None,
        start_timeout: float = 60.0,
        auto_create_topics: bool = False,
        heap: str = "512m",
        properties: Mapping[str, str] | None = None,
    ) -> None:
        """``heap`` is the broker's -Xmx; ``properties`` add to or override server.properties."""
        super().__init__(base_dir=base_dir, start_timeout=start_timeout)
        self.port, self.controller_port = free_ports(2)
        self.auto_create_topics = auto_create_topics
        self.heap = heap
        self.extra_properties = dict(properties or {})
        self.data_dir = self.run_dir / "data"
        self.config_path = self.run_dir / "server.properties"
        self.broker_log_path = self.run_dir / "logs" / "server.log"
        self.cluster_id = random_cluster_id()
        self._admin: AdminClient | None = None

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` for clients: ``127.0.0.1:<port>``."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def address(self) -> str:
        return self.bootstrap

    def client_config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """librdkafka settings that reach this broker, with ``overrides`` on top."""
        return {"bootstrap.servers": self.bootstrap, **(overrides or {})}

    def server_properties(self) -> str:
        controller = f"{LOOPBACK}:{self.controller_port}"
        listeners = f"PLAINTEXT://{self.bootstrap},CONTROLLER://{controller}"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": controller,
            "listeners": listeners,
            "advertised.listeners": listeners,
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": "8388608",
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "4000",
            "num.network.threads": "2",
            "num.io.threads": "4",
            **self.extra_properties,
        }
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def _java(self, main: str, *args: str, xms: str, xmx: str) -> list[str]:
        return [
            java_binary(),
            f"-Xms{xms}",
            f"-Xmx{xmx}",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Djava.io.tmpdir={self.run_dir / 'tmp'}",
            f"-Dlog4j2.configurationFile={self.run_dir / 'log4j2.yaml'}",
            "-cp",
            f"{kafka_libs()}/*",
            main,
            *args,
        ]

    def _prepare(self) -> None:
        (self.run_dir / "tmp").mkdir(exist_ok=True)
        self.broker_log_path.parent.mkdir(exist_ok=True)
        self.config_path.write_text(self.server_properties())
        (self.run_dir / "log4j2.yaml").write_text(_KAFKA_LOG4J2.format(log=self.broker_log_path))
        if not (self.data_dir / "meta.properties").exists():
            self._format_storage()

    def _format_storage(self) -> None:
        """Format the KRaft log dir once; later starts reuse it, like a restarted broker."""
        command = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            self.cluster_id,
            "-c",
            str(self.config_path),
            xms="64m",
            xmx="256m",
        )
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.run_dir)
        if result.returncode != 0:
            raise ServerError(
                f"kafka StorageTool format failed (exit {result.returncode}):\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}\n{tail(self.broker_log_path)}"
            )

    def _command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_path), xms="256m", xmx=self.heap)

    def _ready(self) -> bool:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient(
                {
                    "bootstrap.servers": self.bootstrap,
                    "reconnect.backoff.max.ms": 250,
                    "log_level": 0,
                }
            )
        try:
            metadata = self._admin.list_topics(timeout=2)
        except KafkaException:
            return False
        return bool(metadata.brokers)

    def _wait_ready(self, started: float) -> None:
        try:
            super()._wait_ready(started)
        finally:
            self._admin = None

    def _failure_log(self) -> str:
        """Console output, the broker's ERROR lines (stack traces bury them), then its tail."""
        broker_log = tail(self.broker_log_path, 400).splitlines()
        errors = [line for line in broker_log if "] ERROR " in line or "] FATAL " in line]
        return "\n".join(
            [
                tail(self.log_path, 10),
                f"--- errors in {self.broker_log_path}:",
                *errors[-5:],
                "--- last lines:",
                *broker_log[-25:],
            ]
        )


class RedisServer(_Server):
    """A Redis server without persistence: a restart starts empty, on the same port."""

    name = "redis"

    def __init__(
        self,
        *,
        base_dir: str | Path | None = None,
        start_timeout: float = 30.0,
        port: int | None = None,
    ) -> None:
        super().__init__(base_dir=base_dir, start_timeout=start_timeout)
        self.port = free_port() if port is None else port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def address(self) -> str:
        return self.url

    def _command(self) -> list[str]:
        return [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.run_dir),
            "--daemonize", "no",
        ]  # fmt: skip

    def _ready(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class PostgresServer(_Server):
    """A PostgreSQL cluster of its own: ``initdb`` in a temp dir, ``postgres`` on a free port.

    The postmaster runs as a direct child (not daemonised by ``pg_ctl start``) so that it is
    reaped when it exits and dies with the process that started it: on machines whose init
    does not reap orphans, a daemonised postmaster turns into a zombie whose pid keeps the
    lock files "in use" and blocks a restart. Stopping sends SIGINT, which is
    ``pg_ctl stop -m fast``.

    ``initdb`` refuses to run as root, so when started by root the cluster belongs to
    an unprivileged OS user (``postgres``, made by Debian's package, else ``nobody``) and
    ``initdb``/``postgres`` run as that user. Authentication is ``trust`` for the superuser
    ``reco``. ``fsync`` is off: data must survive a server restart or kill, not a machine
    crash, and it starts and writes faster. ``synchronous_commit`` stays on, since with it off a
    committed row can still sit in shared memory when ``kill()`` strikes.
    """

    name = "postgres"
    stop_signal = signal.SIGINT
    parent_death_signal = signal.SIGQUIT

    def __init__(
        self,
        *,
        base_dir: str | Path | None = None,
        start_timeout: float = 60.0,
        user: str = "reco",
        database: str = "reco",
    ) -> None:
        super().__init__(base_dir=base_dir, start_timeout=start_timeout)
        self.port = free_port()
        self.user = user
        self.database = database
        self.data_dir = self.run_dir / "data"
        self.socket_dir = self.run_dir / "sock"
        self._os_user = _unprivileged_user() if os.geteuid() == 0 else None
        self._created_db = False
        if self._os_user is not None:
            os.chown(self.run_dir, self._os_user.pw_uid, self._os_user.pw_gid)

    @property
    def url(self) -> str:
        """``postgresql://reco@127.0.0.1:<port>/reco``."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """URL of another database on this server."""
        return f"postgresql://{self.user}@{LOOPBACK}:{self.port}/{database}"

    @property
    def address(self) -> str:
        return self.url

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends; the next start runs crash recovery."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with _adopting_orphans():
                os.kill(proc.pid, signal.SIGSTOP)
                family = _children(proc.pid)
                for pid in [*family, proc.pid]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                proc.wait()
                _reap(family, timeout=5.0)
        super().kill()
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        (self.socket_dir / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)

    def _prepare(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(postgres_bindir())

    def _command(self) -> list[str]:
        return [str(postgres_bindir() / "postgres"), "-D", str(self.data_dir)]

    def _popen_options(self) -> dict[str, Any]:
        return self._owner_options()

    def _ready(self) -> bool:
        """The postmaster writes ``ready`` on line 8 of postmaster.pid once it takes connections."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def _after_start(self) -> None:
        if not self._created_db:
            self._run_as_owner(
                [
                    str(postgres_bindir() / "createdb"),
                    "-h", LOOPBACK,
                    "-p", str(self.port),
                    "-U", self.user,
                    self.database,
                ],
                "createdb",
            )  # fmt: skip
            self._created_db = True

    def _initdb(self, bindir: Path) -> None:
        self.socket_dir.mkdir(exist_ok=True)
        if self._os_user is not None:
            os.chown(self.socket_dir, self._os_user.pw_uid, self._os_user.pw_gid)
        self._run_as_owner(
            [
                str(bindir / "initdb"),
                "-D", str(self.data_dir),
                "-U", self.user,
                "--auth=trust",
                "-E", "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            "initdb",
        )  # fmt: skip
        settings = {
            "port": str(self.port),
            "listen_addresses": f"'{LOOPBACK}'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "100",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# reco-engine local server\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _owner_options(self) -> dict[str, Any]:
        """Run as the cluster's OS user, with a small environment of our own."""
        options: dict[str, Any] = {
            "env": {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(self.run_dir),
                "LC_ALL": "C",
                "TZ": "UTC",
            }
        }
        if self._os_user is not None:
            options.update(user=self._os_user.pw_uid, group=self._os_user.pw_gid, extra_groups=[])
        return options

    def _run_as_owner(self, command: list[str], what: str) -> None:
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                cwd=self.run_dir,
                stdin=subprocess.DEVNULL,
                timeout=self.start_timeout,
                **self._owner_options(),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"{what} for {self.data_dir} failed: {exc}") from exc
        if result.returncode != 0:
            as_user = f" as OS user {self._os_user.pw_name}" if self._os_user else ""
            raise ServerError(
                f"{what}{as_user} failed (exit {result.returncode}):\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}\n"
                f"last lines of {self.log_path}:\n{tail(self.log_path)}"
            )


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServerError(
        "running as root, and PostgreSQL's initdb refuses root: create an unprivileged "
        "'postgres' user (Debian's postgresql package does) or run as a non-root user"
    )


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid``, zombies included."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def _reap(pids: list[int], *, timeout: float) -> None:
    """Wait for adopted orphans so they do not linger as zombies."""
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    pending.discard(pid)
            except ChildProcessError:
                pending.discard(pid)
        if pending:
            time.sleep(0.01)
