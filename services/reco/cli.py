"""``reco``: run the engine and work with datasets.

reco dev [--demo]                       ingest + processor + api in one process
reco replay FILE --format F [--url U]   send a dataset to a running engine
reco train [--data-dir D]               item vectors from the archived events, a new model version
reco eval --train T --format F ...      measure recommendation quality (EVALUATION.md)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from reco import __version__
from reco.logs import configure as configure_logging
from reco.settings import (
    ApiSettings,
    ArchiverSettings,
    EmbeddedSettings,
    HttpSettings,
    IngestSettings,
    ProcessorSettings,
)

ROLES: dict[str, tuple[type[HttpSettings], str, str]] = {
    "ingest": (IngestSettings, "reco.services.ingest", "validate events and produce to Kafka"),
    "processor": (ProcessorSettings, "reco.services.processor", "Kafka -> features in Redis"),
    "archiver": (ArchiverSettings, "reco.services.archiver", "Kafka -> PostgreSQL archive"),
    "api": (ApiSettings, "reco.services.api", "serve recommendations from Redis"),
}

log = logging.getLogger("reco")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return code


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
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    dev = sub.add_parser("dev", help="run the embedded engine (all roles, one process)")
    dev.add_argument("--host", help="bind address (default 127.0.0.1, RECO_HOST)")
    dev.add_argument("--port", type=int, help="port (default 8080, RECO_PORT)")
    dev.add_argument("--data-dir", type=Path, help="event log and catalog (RECO_DATA_DIR)")
    dev.add_argument("--demo", action="store_true", help="load a generated shop on first start")
    dev.set_defaults(run=_dev)

    for role, (_, _, summary) in ROLES.items():
        service = sub.add_parser(role, help=f"run the {role} service: {summary}")
        service.add_argument("--host", help="bind address (RECO_HOST, default 0.0.0.0)")
        service.add_argument("--port", type=int, help="HTTP port (RECO_PORT)")
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
    train.set_defaults(run=_train)

    from reco.datasets import FORMATS

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
    ev.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--plot", type=Path, help="write HR@K and MRR@K curves to this PNG")
    ev.set_defaults(run=_eval)
    return parser


def _dev(args: argparse.Namespace) -> int:
    import uvicorn

    from reco.embedded import create_app

    overrides = {
        k: v
        for k, v in {"host": args.host, "port": args.port, "data_dir": args.data_dir}.items()
        if v is not None
    }
    settings = EmbeddedSettings(**overrides)
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
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=False,
    )
    return 0


def _service(args: argparse.Namespace) -> int:
    import importlib

    import uvicorn

    settings_class, module, _ = ROLES[args.role]
    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    settings = settings_class(**overrides)
    app = importlib.import_module(module).create_app(settings)
    log.info("reco %s %s on %s:%d", args.role, __version__, settings.host, settings.port)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        log_config=None,
        access_log=False,
    )
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    from reco.rebuild import rebuild

    settings = ProcessorSettings()
    if not args.yes:
        print(
            "This deletes the features under prefix "
            f"{settings.redis_prefix!r} and recomputes them from topic {settings.topic!r}.\n"
            "Stop every processor first (scale it to 0), then run again with --yes.",
            file=sys.stderr,
        )
        return 2
    report = rebuild(settings)
    print(
        f"rebuilt from {report.records} records ({report.applied} applied) "
        f"in {report.seconds:.1f} s: {report.records / max(report.seconds, 1e-9):,.0f} records/s"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    import orjson
    from pydantic import ValidationError

    from reco.embeddings.training import TrainingDependencyMissing
    from reco.exceptions import BackendUnavailable
    from reco.settings import TrainSettings
    from reco.train import NothingToTrain, run

    flags = {
        "data_dir": args.data_dir, "algorithm": args.algorithm, "dim": args.dim,
        "epochs": args.epochs, "since_days": args.since_days,
    }  # fmt: skip
    try:
        settings = TrainSettings(**{k: v for k, v in flags.items() if v is not None})
        report = run(settings)
    except ValidationError as exc:
        print(f"reco train: {exc}", file=sys.stderr)
        return 2
    except (NothingToTrain, TrainingDependencyMissing, BackendUnavailable) as exc:
        print(f"reco train: {exc}", file=sys.stderr)
        return 1
    v = report.version
    print(orjson.dumps({
        "version": v.version, "kind": v.kind, "size_bytes": v.size_bytes,
        "params": v.params, "metrics": v.metrics, "pruned": report.pruned,
    }).decode())  # fmt: skip
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
    from reco.settings import TrainSettings
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
    )
    print(
        f"sent {report.sent} events: {report.accepted} accepted, {report.rejected} rejected, "
        f"{report.seconds:.1f} s, {report.events_per_s:,.0f} events/s"
    )
    return 0 if report.rejected == 0 else 1


def _eval(args: argparse.Namespace) -> int:
    import orjson

    from reco.evaluation import EvalConfig, run
    from reco.evaluation.report import plot, table

    names = () if args.baselines == "none" else tuple(filter(None, args.baselines.split(",")))
    config = EvalConfig(
        train=args.train, fmt=args.format, test=args.test, split_days=args.split_days,
        protocol=args.protocol, mode=args.mode, k=args.k, baselines=names, seed=args.seed,
        target=args.target, unit=args.unit, embeddings=args.embeddings,
    )  # fmt: skip
    try:
        result = run(config)
    except ValueError as exc:
        print(f"reco eval: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        plot(result, args.plot)
    print(orjson.dumps(result).decode() if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
