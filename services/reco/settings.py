"""Typed settings, read from ``RECO_*`` environment variables through cached getters.

``EngineSettings`` tunes the signals and the scoring and is shared by every role;
each role's own settings class extends it with what only that role needs.
Nested values use ``__``: ``RECO_WEIGHTS__COVIEW=2``. A map is given whole, as JSON:
``RECO_EVENT_WEIGHTS='{"view": 1, "cart": 5, "like": 4}'`` accepts those three types only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# fav (a shop's "add to wishlist", Taobao's fav) is accepted like a click: refusing a common
# event costs clients a 422, and on Taobao no weighting of fav, cart or purchase (0 to 100)
# moved purchase prediction beyond the noise (docs/event-types.md).
DEFAULT_EVENT_WEIGHTS = {"view": 1.0, "click": 3.0, "fav": 3.0, "cart": 5.0, "purchase": 10.0}


class SignalWeights(BaseModel):
    """Weights of the hybrid score: each signal is normalised to [0, 1] per request first."""

    coview: float = Field(1.0, ge=0, description="Items viewed together with the recent ones.")
    sequence: float = Field(1.0, ge=0, description="Items often viewed next after the recent ones.")
    # Chosen on inner splits of Diginetica's and MovieLens's training parts (docs/tuning.md,
    # docs/evaluation.md): 1 lies inside Diginetica's plateau (0 to 4) and is MovieLens's
    # best; ALS vectors at 0.5 raise inner HR@20 .554 -> .597 on Diginetica and NDCG@10
    # .122 -> .131 on MovieLens. The embedding term needs a trained model (reco train).
    neighbours: float = Field(1.0, ge=0, description="Items of similar recent sessions.")
    embedding: float = Field(0.5, ge=0, description="Items near the recent ones in vector space.")
    popularity: float = Field(0.1, ge=0, description="Popular right now (time-decayed).")
    # Chosen on an inner split of Diginetica's training part (docs/evaluation.md): a
    # quarter of next views repeat a session item, which the api shows only to pages that
    # ask for seen items (exclude_seen=false).
    recency: float = Field(4.0, ge=0, description="Items the user saw, most recent first.")


def camel_key(field: str) -> str:
    """``popularity_half_life_s`` -> ``popularityHalfLifeSeconds``: camelCase, with the
    ``_s`` suffix spelled out as Kubernetes names durations (the CRD's spelling)."""
    if field.endswith("_s"):
        field = field[:-2] + "_seconds"
    return to_camel(field)


class CamelOrSnake(BaseModel):
    """Accepts its fields under their snake_case names (``RECO_*`` JSON, the model store)
    and under the CRD's camelCase ones (``spec.experiments``); dumps snake_case."""

    model_config = ConfigDict(extra="forbid", alias_generator=camel_key, populate_by_name=True)


class TunedSettings(CamelOrSnake):
    """A ``reco tune`` result, or an experiment variant's override: request-time settings
    the api applies over its configured ones. Only what a request reads is here (the
    features in the store do not depend on it), so a replica swaps it in without a restart
    or a rebuild. Unset fields keep the configured value; an empty document gives every
    configured value back."""

    weights: SignalWeights | None = Field(
        None, description="Weights of the hybrid score; those left out keep the served ones."
    )
    history_decay: float | None = Field(
        None, gt=0, le=1, description="Weight ratio of each older context item."
    )
    context_items: int | None = Field(
        None, ge=1, description="Recent items a recommendation starts from."
    )
    related_per_item: int | None = Field(
        None, ge=1, description="Related items read per context item."
    )
    neighbour_sample: int | None = Field(
        None, ge=0, description="Most recent candidate sessions a neighbour search weighs."
    )
    neighbour_k: int | None = Field(
        None, ge=0, description="Nearest sessions whose items are scored."
    )

    def apply(self, base: EngineSettings) -> EngineSettings:
        """``base`` with this result's values. Of ``weights``, only those given replace the
        served ones (an experiment's variant may name one weight; a ``reco tune`` result
        names them all)."""
        update = {name: getattr(self, name) for name in type(self).model_fields}
        update = {k: v for k, v in update.items() if v is not None}
        if self.weights is not None:
            given = {name: getattr(self.weights, name) for name in self.weights.model_fields_set}
            update["weights"] = base.weights.model_copy(update=given)
        return base.model_copy(update=update)

    @classmethod
    def between(cls, base: EngineSettings, tuned: EngineSettings) -> TunedSettings:
        """The result that turns ``base`` into ``tuned`` (only the fields that differ)."""
        return cls(
            **{
                name: getattr(tuned, name)
                for name in cls.model_fields
                if getattr(tuned, name) != getattr(base, name)
            }
        )

    def describe(self) -> str:
        """``weights.coview=0 history_decay=0.8 ...`` (empty: nothing set)."""
        out = []
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, dict):
                out += [f"{name}.{k}={v:g}" for k, v in value.items()]
            else:
                out.append(f"{name}={value:g}")
        return " ".join(out)


EXPERIMENT_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"
"""Experiment and variant names: lower-case letters, digits and ``-``, 32 at most. They
appear in recommendation ids (``<experiment>.<variant>.<random>``) and in metric labels."""

ExperimentName = Annotated[str, Field(pattern=EXPERIMENT_NAME_PATTERN)]


class Variant(CamelOrSnake):
    """One arm of an experiment: how the subjects assigned to it are served."""

    name: ExperimentName
    weight: float = Field(
        1.0, gt=0, description="Share of the experiment's subjects, relative to the others."
    )
    ranker: bool = Field(
        False,
        description=(
            "Order candidates by the newest `reco train --ranker` model (when one is "
            "published and useRanker is on); false: by the weighted sum."
        ),
    )
    settings: TunedSettings = Field(
        default_factory=TunedSettings,
        description=(
            "Request-time settings over the served ones (weights, historyDecay, "
            "contextItems, relatedPerItem, neighbourSample, neighbourK)."
        ),
    )


class Experiment(CamelOrSnake):
    """An online A/B test of /recommendations: subjects (users, else sessions) split
    between variants by a stable hash; impressions and the events attributed to them are
    counted per variant by the processor (docs/experiments.md)."""

    name: ExperimentName
    variants: list[Variant] = Field(min_length=2, description="The arms, the first is control.")
    traffic: float = Field(
        1.0,
        gt=0,
        le=1,
        description=(
            "Share of all subjects in this experiment; experiments take disjoint slices, so "
            "that no subject is in two."
        ),
    )
    attribution_window_s: float = Field(
        1800.0,
        gt=0,
        description=(
            "An event of a user on an item shown to them this long before (without the "
            "recommendation's id) is attributed to that recommendation."
        ),
    )

    @model_validator(mode="after")
    def _unique_variants(self) -> Experiment:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.name}: variant names must differ, got {names}")
        return self


class EngineSettings(BaseSettings):
    """How events become features and features become recommendations."""

    model_config = SettingsConfigDict(env_prefix="RECO_", env_nested_delimiter="__", extra="ignore")

    event_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS),
        description="Accepted event types and their weight in co-view and popularity.",
    )
    weights: SignalWeights = Field(
        default_factory=SignalWeights, description="Weights of the hybrid score's signals."
    )

    popularity_half_life_s: float = Field(
        3 * 86400.0, gt=0, description="Half-life of popularity (trending) scores."
    )
    coview_half_life_s: float = Field(
        30 * 86400.0, gt=0, description="Half-life of co-view and sequence scores."
    )
    trend_window_s: float = Field(
        3600.0,
        gt=0,
        description="Window of the items' recent, undecayed weight (the ranker's trend).",
    )
    session_gap_s: float = Field(1800.0, gt=0, description="Inactivity that starts a new session.")
    coview_window: int = Field(10, ge=1, description="Earlier session items paired with a new one.")
    sequence_steps: int = Field(3, ge=1, description="How far back a transition i -> j reaches.")
    max_related_per_item: int = Field(100, ge=1, description="Cap of co-view / sequence lists.")
    max_recent_items: int = Field(50, ge=1, description="Recent items kept per user.")
    max_purchases: int = Field(100, ge=1, description="Purchased items kept per user.")
    max_session_items: int = Field(50, ge=1, description="Items kept per session.")
    max_sessions: int = Field(200_000, ge=1, description="Sessions kept (least recent dropped).")
    max_popular: int = Field(10_000, ge=1, description="Items kept in each popularity list.")
    dedupe_window: int = Field(
        500_000, ge=0, description="Recent event ids remembered to apply a duplicate once."
    )
    neighbour_sessions_per_item: int = Field(
        100, ge=1, description="Most recent sessions kept per item in the neighbour index."
    )
    # Keys spread over this many hash tags, and the tags over the Cluster's slots; each tag
    # is one script per batch, and a unit of the caps of sessions and dedupe ids. Changing
    # it moves every key: only on an empty store (reco rebuild).
    redis_slot_groups: int = Field(
        64,
        ge=1,
        le=16384,
        description=(
            "Redis Cluster only (a redis+cluster:// URL): slot groups the feature keys "
            "spread over; change it only with a rebuild."
        ),
    )

    context_items: int = Field(10, ge=1, description="Recent items a recommendation starts from.")
    related_per_item: int = Field(50, ge=1, description="Related items read per context item.")
    history_decay: float = Field(0.9, gt=0, le=1, description="Weight ratio of each older item.")
    # 200 / 50 scored as 500 / 100 on Diginetica (HR@20 .520, MRR@20 .191 static) and cost
    # a fifth less Redis time per request (docs/evaluation.md).
    neighbour_sample: int = Field(
        200, ge=0, description="Most recent candidate sessions a neighbour search weighs."
    )
    neighbour_k: int = Field(50, ge=0, description="Nearest sessions whose items are scored.")
    embedding_candidates: int = Field(
        50, ge=0, description="Items the embedding index proposes per request."
    )
    model_refresh_s: float = Field(
        30.0, ge=0, description="How often the api looks for a newer trained model; 0: never."
    )
    new_item_boost: float = Field(0.0, ge=0, description="Score boost of new catalog items.")
    new_item_days: float = Field(7.0, ge=0, description="How long a catalog item counts as new.")

    max_batch_events: int = Field(1000, ge=1, description="Events (or items) per request.")
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="Request body limit.")
    max_future_skew_s: float = Field(
        300.0, ge=0, description="How far in the future an event's timestamp may be."
    )
    cache_ttl_s: float = Field(5.0, ge=0, description="Response cache; 0 disables it.")
    cache_size: int = Field(10_000, ge=0, description="Responses kept in the response cache.")
    feature_cache_ttl_s: float = Field(
        0.5,
        ge=0,
        le=1,
        description="How long an api process reuses an item's lists read from Redis; 0: never.",
    )
    feature_cache_size: int = Field(
        10_000, ge=0, description="Item lists an api process keeps (about 8 KB each at most)."
    )
    use_ranker: bool = Field(
        True,
        description=(
            "Order the candidates by the newest `reco train --ranker` model when one is "
            "published; false: by the weighted sum."
        ),
    )
    tuned_settings: bool = Field(
        True,
        description=(
            "Apply the newest `reco tune` result (weights and request-time caps learned from "
            "the shop's own events) over the configured values; false: the configured ones."
        ),
    )

    experiments: list[Experiment] = Field(
        default_factory=list,
        description=(
            "Online A/B tests of /recommendations (docs/experiments.md); each takes its own "
            "slice of the subjects."
        ),
    )

    @field_validator("event_weights")
    @classmethod
    def _weights_valid(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if not name or weight < 0:
                raise ValueError(f"event type {name!r} needs a name and a weight >= 0")
            if name == IMPRESSION_TYPE:
                raise ValueError(
                    f"event type {name!r} is the engine's own record of a recommendation "
                    "shown; choose another name"
                )
        return value

    @field_validator("experiments")
    @classmethod
    def _experiments_valid(cls, value: list[Experiment]) -> list[Experiment]:
        names = [e.name for e in value]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment names must differ, got {names}")
        traffic = sum(e.traffic for e in value)
        if traffic > 1 + 1e-9:
            raise ValueError(
                f"the experiments' traffic adds up to {traffic:g}; at most 1, since each "
                "subject is in one experiment at most"
            )
        return value


IMPRESSION_TYPE = "impression"
"""The type of the records the api writes to the event log for each recommendation it
served in an experiment; clients cannot send it (``event_weights`` refuses the name)."""

TUNED_SETTINGS = "tuned-settings"
"""The model-store kind of ``reco tune``'s results."""


# Which engine settings each role reads. The Kubernetes operator rolls a role's pods only
# when one of its own settings changes; a new setting must be listed under every role that
# reads it (tests/unit/test_settings.py checks that every setting is listed somewhere).
_STORE_CAPS = frozenset(
    {
        "max_related_per_item",
        "max_popular",
        "max_sessions",
        "dedupe_window",
        "neighbour_sessions_per_item",
        "redis_slot_groups",
    }
)
ROLE_SETTINGS: dict[str, frozenset[str]] = {
    "ingest": frozenset(
        {"event_weights", "max_batch_events", "max_body_bytes", "max_future_skew_s"}
    ),
    "processor": _STORE_CAPS
    | {
        "event_weights",
        "session_gap_s",
        "coview_window",
        "sequence_steps",
        "max_recent_items",
        "max_purchases",
        "max_session_items",
        "coview_half_life_s",
        "popularity_half_life_s",
        "trend_window_s",
        "experiments",
    },
    "archiver": frozenset(),
    "api": _STORE_CAPS
    | {
        "weights",
        "context_items",
        "related_per_item",
        "history_decay",
        "neighbour_sample",
        "neighbour_k",
        "embedding_candidates",
        "model_refresh_s",
        "new_item_boost",
        "new_item_days",
        "popularity_half_life_s",
        "trend_window_s",
        "cache_ttl_s",
        "cache_size",
        "feature_cache_ttl_s",
        "feature_cache_size",
        "tuned_settings",
        "use_ranker",
        "experiments",
        "max_batch_events",
        "max_body_bytes",
    },
}


Keys = Annotated[list[SecretStr], NoDecode]


class HttpSettings(EngineSettings):
    """What every role with an HTTP port shares: bind address, access, rate limit."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_keys: Keys = Field(
        default_factory=list,
        description="Write keys (POST /events, PUT /items), comma-separated; empty: open.",
    )
    read_api_keys: Keys = Field(
        default_factory=list, description="Read-only keys, comma-separated; empty: open reads."
    )
    rate_limit_per_s: float = Field(0.0, ge=0, description="Per client and replica; 0: off.")
    log_format: Literal["text", "json"] = "text"
    otel_enabled: bool = Field(False, description="OpenTelemetry tracing (OTLP over HTTP).")
    otel_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    watchdog_s: float = Field(
        120.0,
        gt=0,
        description=(
            "/health/live answers 503 once a consumer loop (processor, archiver, embedded "
            "mode) has gone this long without applying a batch or finding the log drained, "
            "so that Kubernetes restarts it. Longer than the slowest batch (a rescale takes "
            "up to RECO_REDIS_RESCALE_TIMEOUT_S)."
        ),
    )

    @field_validator("api_keys", "read_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value


class EmbeddedSettings(HttpSettings):
    """``reco dev``: the three roles in one process over embedded backends."""

    data_dir: Path = Path(".reco-data")
    processor_batch: int = Field(2000, ge=1)


class StackSettings(HttpSettings):
    """The backends of the production shape: Kafka, Redis, PostgreSQL.

    ``RECO_REDIS_URL`` names one Redis (``redis://``, ``rediss://``, ``unix://``), the master
    that Sentinels watch (``redis+sentinel://host:port[,host:port...]/<service>[/<db>]``,
    ``rediss+sentinel://`` with TLS to the data nodes) or a Redis Cluster
    (``redis+cluster://host:port[,host:port...]``, ``rediss+cluster://`` with TLS; any
    reachable node will do, several let a process start while one is down). On a Cluster
    the feature keys spread over ``RECO_REDIS_SLOT_GROUPS`` hash tags."""

    host: str = "0.0.0.0"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How the Kafka clients connect (librdkafka security.protocol)."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_ca_location: str = Field("", description="CA bundle (PEM file) to verify brokers.")
    kafka_ssl_certificate_location: str = Field("", description="Client certificate (mTLS).")
    kafka_ssl_key_location: str = Field("", description="Client key (mTLS).")
    topic: str = "reco.events"
    topic_partitions: int = Field(12, ge=1, description="Upper bound of processor replicas.")
    topic_replication: int = Field(1, ge=1)
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    redis_prefix: str = "reco:"
    database_url: SecretStr = SecretStr("postgresql://reco@127.0.0.1:5432/reco")

    # No call to a backend waits without a bound: a timed-out call is logged, counted
    # (backend_timeouts_total) and retried, so a backend that stalls shows up as errors
    # and lag instead of a process that looks alive and does nothing.
    kafka_timeout_s: float = Field(
        10.0, gt=0, description="Kafka admin calls, dead-letter writes and closing the client."
    )
    redis_timeout_s: float = Field(5.0, gt=0, description="Each Redis call (socket timeout).")
    redis_rescale_timeout_s: float = Field(
        60.0, gt=0, description="The rare rewrite of every decayed score when the landmark moves."
    )
    postgres_timeout_s: float = Field(
        10.0, gt=0, description="Connecting to PostgreSQL and each statement (statement_timeout)."
    )

    def kafka_client_config(self) -> dict[str, str]:
        """The librdkafka connection settings every client of the cluster shares."""
        config = {"security.protocol": self.kafka_security_protocol.lower()}
        if self.kafka_security_protocol.startswith("SASL"):
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_sasl_username
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        for key, path in (
            ("ssl.ca.location", self.kafka_ssl_ca_location),
            ("ssl.certificate.location", self.kafka_ssl_certificate_location),
            ("ssl.key.location", self.kafka_ssl_key_location),
        ):
            if path:
                config[key] = path
        return config


class IngestSettings(StackSettings):
    port: int = Field(8081, ge=0, le=65535)
    produce_timeout_s: float = Field(10.0, gt=0, description="Wait for Kafka's acks this long.")


class ConsumerSettings(StackSettings):
    """What every consumer-group service (processor, archiver, rebuild) shares."""

    session_timeout_ms: int = Field(
        10_000,
        ge=6000,
        description=(
            "How long the group waits for a member that stopped answering (a killed pod) "
            "before giving its partitions to the others; Kafka's default 45 s stalls them."
        ),
    )


class ProcessorSettings(ConsumerSettings):
    port: int = Field(8082, ge=0, le=65535)
    group: str = "reco-processor"
    batch_size: int = Field(2000, ge=1)
    poll_timeout_s: float = Field(0.05, gt=0)


class ArchiverSettings(ConsumerSettings):
    port: int = Field(8083, ge=0, le=65535)
    group: str = "reco-archiver"
    batch_size: int = Field(5000, ge=1)
    poll_timeout_s: float = Field(0.5, gt=0)


class ApiSettings(StackSettings):
    port: int = Field(8080, ge=0, le=65535)


class TrainSettings(StackSettings):
    """``reco train``: item vectors from the archived events, published as a model version.

    With ``data_dir`` set it trains embedded mode's data directory (its event log, catalog
    and ``models.db``); otherwise the PostgreSQL archive, catalog and model table."""

    data_dir: Path | None = None
    algorithm: Literal["item2vec", "als"] = Field(
        "als", description="als beat item2vec on every inner split (docs/evaluation.md)."
    )
    dim: int = Field(64, ge=2, le=1024, description="Dimensions of the item vectors.")
    epochs: int = Field(20, ge=1, description="Passes over the events (ALS: iterations).")
    window: int = Field(5, ge=1, description="item2vec: session items on each side that count.")
    negative: int = Field(5, ge=1, description="item2vec: negative samples per positive.")
    min_count: int = Field(1, ge=1, description="Items with fewer events get no vector.")
    regularization: float = Field(0.05, ge=0, description="ALS: L2 weight of the factors.")
    since_days: float | None = Field(
        None, gt=0, description="Train on the events of the last N days only; unset: all."
    )
    keep_versions: int = Field(5, ge=1, description="Model versions kept; older ones deleted.")
    ranker_candidates: int = Field(
        200, ge=2, le=2000, description="--ranker: candidates of the weighted sum it orders."
    )
    ranker_max_requests: int = Field(
        100_000, ge=100, description="--ranker: requests recorded at most (every k-th kept)."
    )
    ranker_unit: Literal["session", "user"] = Field(
        "session",
        description="--ranker: train on the requests pages make, by session or by user.",
    )
    ranker_target: Literal["next", "purchase"] = Field(
        "next",
        description=(
            "--ranker: learn to put first the next event's item, or the item of each "
            "purchase (recording the requests before purchases only)."
        ),
    )
    ranker_catalog: bool = Field(
        True,
        description=(
            "--ranker: learn from the catalog features (category match with the recent "
            "items, price ratio, age); false: without them, and the api reranks without "
            "reading the catalog (cheaper per request)."
        ),
    )
    ranker_exclude_seen: bool = Field(
        True,
        description=(
            "--ranker: leave the requester's items so far out of each training request, as "
            "the api's exclude_seen (on by default) leaves them out of a page."
        ),
    )


class TuneSettings(TrainSettings):
    """``reco tune``: the request-time settings searched on the shop's own events.

    The events come from where ``reco train`` reads them (``data_dir`` or PostgreSQL); item
    vectors for the embedding term are trained on each inner-train part with the training
    settings above, as ``reco train`` would. The search starts from the settings the api
    serves (the configured ones with the newest result over them)."""

    protocol: Literal["next", "user"] = Field(
        "next",
        description=(
            "next: rank each session's next item (shops); user: each user's last item among "
            "the items they have not seen (rating logs)."
        ),
    )
    test_days: float = Field(
        7.0, gt=0, description="next protocol: the inner test part is the log's last N days."
    )
    folds: int = Field(
        1, ge=1, le=5, description="next protocol: inner splits, each N days before the last."
    )
    budget_s: float = Field(
        900.0,
        gt=0,
        description="The search ends with what it has once its next step would not fit.",
    )
