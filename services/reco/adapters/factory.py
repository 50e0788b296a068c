"""Pick the adapter from the connection URL's scheme, so that one setting switches backend:
``memory://``, ``redis://…``, ``redis+sentinel://host:port,…/<service>`` (the master
Sentinels watch) or ``redis+cluster://host:port,…`` (a Redis Cluster) for
features, ``sqlite:///path`` or ``postgresql://…`` for the catalog and the archive. Backend
modules are imported only when chosen."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from reco.exceptions import ConfigError
from reco.ports import Catalog, EventArchive, FeatureStore, ModelStore
from reco.settings import EngineSettings

_REDIS = {"redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel"}
_REDIS_CLUSTER = {"redis+cluster", "rediss+cluster"}
_POSTGRES = {"postgresql", "postgres"}


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def open_feature_store(
    url: str,
    settings: EngineSettings,
    *,
    prefix: str = "reco:",
    timeout_s: float = 5.0,
    rescale_timeout_s: float = 60.0,
) -> FeatureStore:
    """``timeout_s`` bounds each call to a remote store, ``rescale_timeout_s`` the rescale."""
    scheme = _scheme(url)
    caps = {
        "max_related_per_item": settings.max_related_per_item,
        "max_popular": settings.max_popular,
        "max_sessions": settings.max_sessions,
        "dedupe_window": settings.dedupe_window,
        "neighbour_sessions_per_item": settings.neighbour_sessions_per_item,
    }
    if scheme == "memory":
        from reco.adapters.memory_features import MemoryFeatureStore

        return MemoryFeatureStore(**caps)
    if scheme in _REDIS:
        from reco.adapters.redis_features import RedisFeatureStore

        return RedisFeatureStore.from_url(
            url,
            prefix=prefix,
            socket_timeout_s=timeout_s,
            rescale_timeout_s=rescale_timeout_s,
            list_cache_size=settings.feature_cache_size,
            list_cache_ttl_s=settings.feature_cache_ttl_s,
            **caps,
        )
    if scheme in _REDIS_CLUSTER:
        from reco.adapters.redis_cluster import RedisClusterFeatureStore

        return RedisClusterFeatureStore.from_url(
            url,
            prefix=prefix,
            slot_groups=settings.redis_slot_groups,
            socket_timeout_s=timeout_s,
            rescale_timeout_s=rescale_timeout_s,
            list_cache_size=settings.feature_cache_size,
            list_cache_ttl_s=settings.feature_cache_ttl_s,
            **caps,
        )
    raise ConfigError(
        f"feature store URL scheme {scheme!r}: use memory://, redis://host:port/db, "
        "redis+sentinel://host:port[,host:port...]/<service>[/<db>] or "
        "redis+cluster://host:port[,host:port...]"
    )


def open_catalog(url: str, *, timeout_s: float | None = None) -> Catalog:
    """``timeout_s`` bounds each PostgreSQL statement; ``None``: unbounded."""
    scheme = _scheme(url)
    if scheme == "sqlite":
        from reco.adapters.sqlite_catalog import SqliteCatalog

        return SqliteCatalog(Path(urlsplit(url).path))
    if scheme in _POSTGRES:
        from reco.adapters.postgres_catalog import PostgresCatalog

        return PostgresCatalog.from_url(url, timeout_s=timeout_s)
    raise ConfigError(f"catalog URL scheme {scheme!r}: use sqlite:///path or postgresql://…")


def open_archive(url: str, *, timeout_s: float | None = None) -> EventArchive:
    if _scheme(url) in _POSTGRES:
        from reco.adapters.postgres_archive import PostgresArchive

        return PostgresArchive.from_url(url, timeout_s=timeout_s)
    raise ConfigError(f"archive URL scheme {_scheme(url)!r}: use postgresql://…")


def open_model_store(url: str, *, timeout_s: float | None = None) -> ModelStore:
    scheme = _scheme(url)
    if scheme == "sqlite":
        from reco.adapters.sqlite_models import SqliteModelStore

        return SqliteModelStore(Path(urlsplit(url).path))
    if scheme in _POSTGRES:
        from reco.adapters.postgres_models import PostgresModelStore

        return PostgresModelStore.from_url(url, timeout_s=timeout_s)
    raise ConfigError(f"model store URL scheme {scheme!r}: use sqlite:///path or postgresql://…")
