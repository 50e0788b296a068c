"""``reco``: run the engine and work with datasets.

reco dev [--demo]                       ingest + processor + api in one process
reco replay FILE --format F [--url U]   send a dataset to a running engine
reco train [--data-dir D]               item vectors from the archived events, a new model version
reco eval --train T --format F ...      measure recommendation quality (EVALUATION.md)
reco ab report [--url U]                the running experiments' variants compared

A mistake a person can fix ends a command with one line on stderr, ``reco COMMAND: what is
wrong; what to do``, and exit code 2 for usage (a flag, a ``RECO_*`` setting) or 1 for a
failure (a file, a backend, an engine that does not answer); ``explain`` is where the
engine's named exceptions become that line. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from reco import __version__
from reco.datasets.exceptions import DatasetFormatError
from reco.exceptions import BackendUnavailable, ConfigError, RecoError
from reco.logs import configure as configure_logging
from reco.settings import (
    ApiSettings,
    ArchiverSettings,
    EmbeddedSettings,
    EngineSettings,
    HttpSettings,
    IngestSettings,
    ProcessorSettings,
    TrainSettings,
    TuneSettings,
)
from reco.validation import echo

ROLES: dict[str, tuple[type[HttpSettings], str, str]] = {
    "ingest": (IngestSettings, "reco.services.ingest", "validate events and produce to Kafka"),
    "processor": (ProcessorSettings, "reco.services.processor", "Kafka -> features in Redis"),
    "archiver": (ArchiverSettings, "reco.services.archiver", "Kafka -> PostgreSQL archive"),
    "api": (ApiSettings, "reco.services.api", "serve recommendations from Redis"),
}

log = logging.getLogger("reco")


USAGE = 2
FAILURE = 1
BACKEND_SETTINGS = "RECO_KAFKA_BOOTSTRAP, RECO_REDIS_URL or RECO_DATABASE_URL"
# Settings that have a flag of the same meaning on some command.
FLAGS = {
    "host": "--host", "port": "--port", "data_dir": "--data-dir", "algorithm": "--algorithm",
    "dim": "--dim", "epochs": "--epochs", "since_days": "--since-days",
    "protocol": "--protocol", "test_days": "--test-days", "folds": "--folds",
    "budget_s": "--budget-s", "ranker_target": "--target",
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except _named_errors() as exc:
        message, code = explain(exc)
        if code == USAGE and ";" not in message:
            message += f"; see reco {args.command} --help"
        print(f"reco {args.command}: {' '.join(message.split())}", file=sys.stderr)
    return code


def explain(exc: BaseException) -> tuple[str, int]:
    """The line that tells a person what went wrong and what to do, and the exit code."""
    if isinstance(exc, ValidationError) and exc.title.endswith("Settings"):
        return _bad_settings(exc), USAGE
    if isinstance(exc, SettingsError):
        return _unparsable_setting(exc), USAGE
    if isinstance(exc, ConfigError):
        return str(exc), USAGE
    if isinstance(exc, DatasetFormatError):
        return f"{exc}; check that the file is in the --format given", FAILURE
    if isinstance(exc, BackendUnavailable):
        return f"{exc}; start it, or point {BACKEND_SETTINGS} at a running one", FAILURE
    if isinstance(exc, OSError) and exc.filename is not None:
        return _unreadable(exc), FAILURE
    return str(exc) or type(exc).__name__, FAILURE


def _named_errors() -> tuple[type[Exception], ...]:
    """What ``explain`` words; named errors of modules that only some commands import are
    imported once one of them is raised."""
    from reco.embeddings.training import TrainingDependencyMissing
    from reco.ranking.model import RankerDependencyMissing
    from reco.ranking.training import TooFewExamples
    from reco.train import NothingToTrain
    from reco.tune import NothingToTune

    return (RecoError, ValidationError, SettingsError, OSError, TrainingDependencyMissing,
            NothingToTrain, NothingToTune, TooFewExamples, RankerDependencyMissing)  # fmt: skip


def _bad_settings(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(str(part) for part in err["loc"])
        field = loc[0] if loc else ""
        got = "" if _is_secret(field) else f" (got {echo(err['input'])})"
        problems.append(f"{_variable(loc)}: {err['msg'].removeprefix('Value error, ')}{got}")
    flags = sorted(
        {FLAGS[str(e["loc"][0])] for e in exc.errors() if e["loc"] and e["loc"][0] in FLAGS}
    )
    where = f" (or {', '.join(flags)})" if flags else ""
    return "; ".join(problems) + f"; fix the variable{where}"


def _variable(loc: tuple[str, ...]) -> str:
    """``("weights", "coview")`` -> ``RECO_WEIGHTS__COVIEW``; a map is one variable."""
    if not loc:
        return "settings"
    field = TrainSettings.model_fields.get(loc[0]) or EngineSettings.model_fields.get(loc[0])
    nested = (
        field is not None
        and isinstance(field.annotation, type)
        and issubclass(field.annotation, BaseModel)
    )
    parts = loc[:2] if nested and len(loc) > 1 else loc[:1]
    return "RECO_" + "__".join(p.upper() for p in parts)


def _is_secret(field: str) -> bool:
    info = TrainSettings.model_fields.get(field)
    return info is not None and "SecretStr" in str(info.annotation)


def _unparsable_setting(exc: SettingsError) -> str:
    # pydantic-settings says 'error parsing value for field "event_weights" from source ...'
    found = re.search(r'field "([^"]+)"', str(exc))
    name = f"RECO_{found.group(1).upper()}" if found else "a RECO_* variable"
    return f"{name} is not valid JSON; give it as JSON, e.g. RECO_EVENT_WEIGHTS='{{\"view\": 1}}'"


def _unreadable(exc: OSError) -> str:
    path = exc.filename
    if isinstance(exc, FileNotFoundError):
        return f"{path}: no such file or directory; check the path"
    if isinstance(exc, IsADirectoryError):
        return f"{path} is a directory; give the path of a file"
    if isinstance(exc, NotADirectoryError | FileExistsError):
        return f"{path}: a part of the path is a file, not a directory; check the path"
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        return f"{path}: permission denied; make it readable (and writable for a data directory)"
    return f"{path}: {exc.strerror or exc}; check the path"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reco", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"reco-engine {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument(
        "--log-format",
        default=os.environ.get("RECO_LOG_FORMAT", "text"),
        choices=["text", "json"],
        help="json: one JSON object per line (RECO_LOG_FORMAT)",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND", dest="command")

    dev = sub.add_parser("dev", help="run the embedded engine (all roles, one process)")
    dev.add_argument("--host", help="bind address (default 127.0.0.1, RECO_HOST)")
    dev.add_argument("--port", type=_port, help="port (default 8080, RECO_PORT)")
    dev.add_argument("--data-dir", type=Path, help="event log and catalog (RECO_DATA_DIR)")
    dev.add_argument("--demo", action="store_true", help="load a generated shop on first start")
    dev.set_defaults(run=_dev)

    for role, (_, _, summary) in ROLES.items():
        service = sub.add_parser(role, help=f"run the {role} service: {summary}")
        service.add_argument("--host", help="bind address (RECO_HOST, default 0.0.0.0)")
        service.add_argument("--port", type=_port, help="HTTP port (RECO_PORT)")
        service.set_defaults(run=_service, role=role)

    rebuild = sub.add_parser(
        "rebuild", help="recompute the Redis features from the whole Kafka topic"
    )
    rebuild.add_argument(
        "--yes", action="store_true", help="do not ask; the processors must be stopped"
    )
    rebuild.set_defaults(run=_rebuild)

    train = sub.add_parser(
        "train", help="learn item vectors from the archived events; publish a model version"
    )
    train.add_argument(
        "--data-dir", type=Path, help="train embedded mode's data directory (else PostgreSQL)"
    )
    train.add_argument("--algorithm", choices=["item2vec", "als"], help="(RECO_ALGORITHM)")
    train.add_argument("--dim", type=int, help="vector dimensions (RECO_DIM, default 64)")
    train.add_argument("--epochs", type=int, help="passes over the events (RECO_EPOCHS)")
    train.add_argument("--since-days", type=float, help="only the last N days of events")
    train.add_argument(
        "--ranker",
        action="store_true",
        help="learn the ranker (LambdaRank over each candidate's features) instead of vectors",
    )
    train.add_argument(
        "--target",
        choices=["next", "purchase"],
        help="--ranker: put first the next event's item (default) or each purchase's",
    )
    train.set_defaults(run=_train)

    from reco.datasets import FORMATS

    tune = sub.add_parser(
        "tune",
        help="learn the scoring weights from the shop's own events; publish them for the api",
    )
    tune.add_argument(
        "--data-dir", type=Path, help="tune on embedded mode's data directory (else PostgreSQL)"
    )
    tune.add_argument(
        "--events", type=Path, help="search on this file instead of the archive (with --format)"
    )
    tune.add_argument("--format", choices=sorted(FORMATS), help="the format of --events")
    tune.add_argument(
        "--protocol",
        choices=["next", "user"],
        help="next: each session's next item (default); user: each user's last item",
    )
    tune.add_argument("--test-days", type=float, help="inner test part: the last N days (7)")
    tune.add_argument("--folds", type=int, help="inner splits, each N days earlier (1)")
    tune.add_argument("--since-days", type=float, help="only the last N days of events")
    tune.add_argument("--budget-s", type=float, help="seconds the search may take (900)")
    tune.add_argument("--dry-run", action="store_true", help="search and report; publish nothing")
    tune.add_argument(
        "--clear", action="store_true", help="publish an empty result: the configured settings"
    )
    tune.set_defaults(run=_tune)

    replay = sub.add_parser("replay", help="send a dataset's events to a running engine")
    replay.add_argument("file", type=Path)
    replay.add_argument("--format", required=True, choices=sorted(FORMATS))
    replay.add_argument("--url", default="http://127.0.0.1:8080")
    replay.add_argument("--batch-size", type=int, default=500)
    replay.add_argument("--limit", type=int, help="send at most this many events")
    replay.add_argument("--api-key", help="sent as 'Authorization: Bearer KEY'")
    replay.add_argument("--no-items", action="store_true", help="do not upsert catalog items")
    replay.set_defaults(run=_replay)

    ev = sub.add_parser("eval", help="measure recommendation quality (EVALUATION.md)")
    ev.add_argument("--train", type=Path, required=True, help="training file (or the whole set)")
    ev.add_argument("--test", type=Path, help="test file of the next protocol")
    ev.add_argument("--split-days", type=float, help="test = sessions ending in the last D days")
    ev.add_argument("--format", required=True, choices=sorted(FORMATS))
    ev.add_argument("--protocol", default="next", choices=["next", "user"])
    ev.add_argument("--mode", default="static", choices=["static", "online"])
    ev.add_argument(
        "--target",
        default="next",
        choices=["next", "purchase"],
        help="next protocol: the next event's item, or the item of each purchase",
    )
    ev.add_argument(
        "--unit",
        default="session",
        choices=["session", "user"],
        help="purchase target: rank for the session (its prefix) or the user (their history)",
    )
    ev.add_argument("--k", type=int, default=20, help="largest cut-off K (default 20)")
    ev.add_argument("--baselines", default="pop,spop,sr,vsknn", help="comma-separated, or none")
    ev.add_argument(
        "--embeddings",
        default="auto",
        choices=["auto", "none", "item2vec", "als"],
        help="train item vectors on T first (auto: ALS if RECO_WEIGHTS__EMBEDDING > 0)",
    )
    ev.add_argument(
        "--ranker",
        action="store_true",
        help="also the engine with a ranker trained on the training part (engine+ranker)",
    )
    ev.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--plot", type=Path, help="write HR@K and MRR@K curves to this PNG")
    ev.set_defaults(run=_eval)

    ab = sub.add_parser("ab", help="online experiments (A/B tests of /recommendations)")
    ab_sub = ab.add_subparsers(required=True, metavar="ACTION", dest="action")
    ab_report = ab_sub.add_parser(
        "report",
        help="each experiment's variants compared: events per impression, intervals",
    )
    ab_report.add_argument(
        "--url",
        help=(
            "ask a running engine (GET URL/experiments: the embedded one, an api Service); "
            "without it, read the counters in Redis (RECO_REDIS_URL) with RECO_EXPERIMENTS"
        ),
    )
    ab_report.add_argument("--api-key", help="read key, sent as 'Authorization: Bearer KEY'")
    ab_report.add_argument("--json", action="store_true", help="print one JSON object")
    ab_report.set_defaults(run=_ab_report)
    return parser


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (0 to 65535)")
    return port


def _dev(args: argparse.Namespace) -> int:
    from reco.embedded import create_app

    overrides = {
        k: v
        for k, v in {"host": args.host, "port": args.port, "data_dir": args.data_dir}.items()
        if v is not None
    }
    settings = EmbeddedSettings(**overrides)
    _writable_dir(Path(settings.data_dir))
    demo_user = _load_demo(settings) if args.demo else None
    url = f"http://{settings.host}:{settings.port}"
    print(f"reco-engine {__version__} (embedded) on {url}, data in {settings.data_dir}")
    print(f"  API docs:   {url}/docs")
    if demo_user:
        print(f"  demo user:  {demo_user}")
        print(f"  try:        curl '{url}/recommendations?user_id={demo_user}&count=10'")
    sys.stdout.flush()
    # uvicorn turns SIGTERM into a graceful shutdown: the app's lifespan stops the processor
    # after its current batch and closes the backends.
    _serve(create_app(settings), settings, log_level=args.log_level, access_log=False)
    return 0


def _writable_dir(path: Path) -> None:
    """The data directory, made if missing; refused here rather than as SQLite's 'unable
    to open database file' from inside the server's startup."""
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "not writable", str(path))


def _service(args: argparse.Namespace) -> int:
    import importlib

    settings_class, module, _ = ROLES[args.role]
    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = settings_class(**overrides)
    app = importlib.import_module(module).create_app(settings)
    log.info("reco %s %s on %s:%d", args.role, __version__, settings.host, settings.port)
    _serve(app, settings, log_level=args.log_level, log_config=None, access_log=False)
    return 0


ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


def _serve(app: ASGIApp, settings: HttpSettings, **options: Any) -> None:
    """uvicorn.run, except that a startup the engine refused on purpose (a backend that
    cannot be reached, a bad setting) is raised here for ``main`` to explain in one line,
    instead of uvicorn logging its traceback and exiting 3."""
    import uvicorn

    guard = _StartupGuard(app)
    try:
        uvicorn.run(guard, host=settings.host, port=settings.port, **options)
    except SystemExit:
        if guard.failure is not None:
            raise guard.failure from None
        raise


class _StartupGuard:
    """An ASGI wrapper that keeps the startup failure of a named kind, and tells uvicorn
    that startup failed without the traceback Starlette puts in that message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.failure: BaseException | None = None

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def report(message: Any) -> None:
            # Starlette sends this from inside its ``except`` block: the failure is current.
            failure = sys.exception()
            if message["type"] == "lifespan.startup.failed" and _explained(failure):
                self.failure = failure
                message = {"type": "lifespan.startup.failed", "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, report)
        except BaseException:
            if self.failure is None:
                raise


def _explained(exc: BaseException | None) -> bool:
    return isinstance(exc, RecoError | ValidationError | SettingsError | OSError)


def _rebuild(args: argparse.Namespace) -> int:
    from reco.rebuild import rebuild

    settings = ProcessorSettings()
    if not args.yes:
        print(
            f"reco rebuild: this deletes the features under prefix {settings.redis_prefix!r} "
            f"and recomputes them from topic {settings.topic!r}; stop every processor first "
            "(scale it to 0), then run again with --yes",
            file=sys.stderr,
        )
        return USAGE
    report = rebuild(settings)
    print(
        f"rebuilt from {report.records} records ({report.applied} applied) "
        f"in {report.seconds:.1f} s: {report.records / max(report.seconds, 1e-9):,.0f} records/s"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    import orjson

    from reco.ranking import RANKER
    from reco.train import run, run_ranker

    if args.target is not None and not args.ranker:
        raise ConfigError("--target applies to --ranker only; add --ranker or drop --target")
    flags = {
        "data_dir": args.data_dir, "algorithm": args.algorithm, "dim": args.dim,
        "epochs": args.epochs, "since_days": args.since_days, "ranker_target": args.target,
    }  # fmt: skip
    settings = TrainSettings(**{k: v for k, v in flags.items() if v is not None})
    if args.ranker:
        ranked = run_ranker(settings)
        r = ranked.version
        print(orjson.dumps({
            "version": r.version if r else None, "kind": RANKER, "verdict": ranked.verdict,
            "metrics": ranked.metrics, "pruned": ranked.pruned,
        }).decode())  # fmt: skip
        return 0
    report = run(settings)
    v = report.version
    print(orjson.dumps({
        "version": v.version, "kind": v.kind, "size_bytes": v.size_bytes,
        "params": v.params, "metrics": v.metrics, "pruned": report.pruned,
    }).decode())  # fmt: skip
    return 0


def _tune(args: argparse.Namespace) -> int:
    import orjson

    from reco import tune

    flags = {
        "data_dir": args.data_dir, "protocol": args.protocol, "test_days": args.test_days,
        "folds": args.folds, "since_days": args.since_days, "budget_s": args.budget_s,
    }  # fmt: skip
    settings = TuneSettings(**{k: v for k, v in flags.items() if v is not None})
    if args.clear:
        version = tune.clear(settings)
        print(orjson.dumps({"cleared": True, "version": version.version}).decode())
        return 0
    if (args.events is None) != (args.format is None):
        raise ConfigError("--events and --format go together: give both, or neither")
    events = None
    if args.events is not None:
        from reco.evaluation.data import load

        events = load(args.events, args.format, settings, prefix="f").events
    report = tune.run(settings, events=events, dry_run=args.dry_run)
    print(orjson.dumps(report.as_dict()).decode())
    return 0


def _load_demo(settings: EmbeddedSettings) -> str:
    """Load the demo shop through the ingest path, once per data directory."""
    from reco.catalog import ItemIn
    from reco.demo import generate
    from reco.embedded import EmbeddedEngine
    from reco.ingest import IngestService

    data = generate()
    loaded = False
    engine = EmbeddedEngine.open(settings)
    try:
        if engine.catalog.count() == 0:
            engine.catalog.upsert([ItemIn(**i) for i in data.items])
            ingest = IngestService(engine.producer, settings, engine.metrics)
            size = settings.max_batch_events
            for start in range(0, len(data.events), size):
                events, rejected = ingest.validate(data.events[start : start + size])
                if rejected:
                    raise RuntimeError(f"demo data rejected: {rejected[:3]}")
                ingest.produce(events, rejected)
            log.info("demo: %d items, %d events loaded", len(data.items), len(data.events))
            loaded = True
    finally:
        engine.close()
    if loaded:
        _train_demo(settings)
    return data.demo_user


def _train_demo(settings: EmbeddedSettings) -> None:
    """Item vectors for the demo shop, as a scheduled ``reco train`` would make them."""
    from reco.embeddings.training import TrainingDependencyMissing
    from reco.train import run

    try:
        report = run(TrainSettings(data_dir=settings.data_dir))
    except TrainingDependencyMissing as exc:
        log.info("demo: no item vectors (%s)", exc)
        return
    log.info("demo: item vectors trained, model version %d", report.version.version)


def _replay(args: argparse.Namespace) -> int:
    from reco.replay import replay

    report = replay(
        args.file,
        args.format,
        args.url,
        batch_size=args.batch_size,
        api_key=args.api_key,
        limit=args.limit,
        items=not args.no_items,
        progress=sys.stderr.isatty(),  # a bar is for a terminal, not for a log
    )
    print(
        f"sent {report.sent} events: {report.accepted} accepted, {report.rejected} rejected, "
        f"{report.seconds:.1f} s, {report.events_per_s:,.0f} events/s"
    )
    return 0 if report.rejected == 0 else 1


def _ab_report(args: argparse.Namespace) -> int:
    import orjson

    from reco.experiments import ExperimentReport, format_report

    if args.url:
        reports = [ExperimentReport.from_dict(e) for e in _get_json(args)["experiments"]]
    else:
        from reco.experiments import compare
        from reco.services.common import open_store

        settings = ApiSettings()
        store = open_store(settings)
        try:
            reports = compare(store.experiment_counts(), settings)
        finally:
            store.close()
    if args.json:
        print(orjson.dumps({"experiments": [r.to_dict() for r in reports]}).decode())
    else:
        print(format_report(reports), end="")
    return 0


def _get_json(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    url = args.url.rstrip("/") + "/experiments"
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one request: no log line for it
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    try:
        response = httpx.get(url, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise BackendUnavailable(f"{url}: {exc}") from exc
    if response.status_code != 200:
        raise RecoError(f"{url} answered {response.status_code}: {response.text[:200]}")
    data: dict[str, Any] = response.json()
    return data


def _eval(args: argparse.Namespace) -> int:
    import orjson

    from reco.evaluation import EvalConfig, run
    from reco.evaluation.report import plot, table

    names = () if args.baselines == "none" else tuple(filter(None, args.baselines.split(",")))
    config = EvalConfig(
        train=args.train, fmt=args.format, test=args.test, split_days=args.split_days,
        protocol=args.protocol, mode=args.mode, k=args.k, baselines=names, seed=args.seed,
        target=args.target, unit=args.unit, embeddings=args.embeddings, ranker=args.ranker,
    )  # fmt: skip
    result = run(config)
    if args.plot:
        plot(result, args.plot)
    print(orjson.dumps(result).decode() if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
