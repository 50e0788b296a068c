"""Typed settings, read from ``RECO_*`` environment variables through cached getters.

``EngineSettings`` tunes the signals and the scoring and is shared by every role;
each role's own settings class extends it with what only that role needs.
Nested values use ``__``: ``RECO_WEIGHTS__COVIEW=2``, ``RECO_EVENT_WEIGHTS='{"like": 4}'``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EVENT_WEIGHTS = {"view": 1.0, "click": 3.0, "cart": 5.0, "purchase": 10.0}


class SignalWeights(BaseModel):
    """Weights of the hybrid score: each signal is normalised to [0, 1] per request first."""

    coview: float = Field(1.0, ge=0)
    sequence: float = Field(1.0, ge=0)
    neighbours: float = Field(0.0, ge=0)
    embedding: float = Field(0.0, ge=0)
    popularity: float = Field(0.1, ge=0)
    recency: float = Field(0.3, ge=0)


class EngineSettings(BaseSettings):
    """How events become features and features become recommendations."""

    model_config = SettingsConfigDict(env_prefix="RECO_", env_nested_delimiter="__", extra="ignore")

    event_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS),
        description="Accepted event types and their weight in co-view and popularity.",
    )
    weights: SignalWeights = Field(default_factory=SignalWeights)

    popularity_half_life_s: float = Field(3 * 86400.0, gt=0)
    coview_half_life_s: float = Field(30 * 86400.0, gt=0)
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

    context_items: int = Field(10, ge=1, description="Recent items a recommendation starts from.")
    related_per_item: int = Field(50, ge=1, description="Related items read per context item.")
    history_decay: float = Field(0.7, gt=0, le=1, description="Weight ratio of each older item.")
    new_item_boost: float = Field(0.0, ge=0, description="Score boost of new catalog items.")
    new_item_days: float = Field(7.0, ge=0)

    max_batch_events: int = Field(1000, ge=1)
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    max_future_skew_s: float = Field(300.0, ge=0)
    cache_ttl_s: float = Field(5.0, ge=0, description="Response cache; 0 disables it.")
    cache_size: int = Field(10_000, ge=0)

    @field_validator("event_weights")
    @classmethod
    def _weights_valid(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if not name or weight < 0:
                raise ValueError(f"event type {name!r} needs a name and a weight >= 0")
        return value


class EmbeddedSettings(EngineSettings):
    """``reco dev``: the three roles in one process over embedded backends."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path(".reco-data")
    processor_batch: int = Field(2000, ge=1)


@lru_cache
def get_embedded_settings() -> EmbeddedSettings:
    return EmbeddedSettings()
