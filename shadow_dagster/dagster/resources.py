"""The signal store as a Dagster resource, validated when the definitions load."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field, field_validator

from shadow_dagster.signals.model import validate_resolution_ms
from shadow_dagster.store.engine import normalise_url
from shadow_dagster.store.layout import ShadowStorage

if TYPE_CHECKING:
    from shadow_dagster.store.signal_store import SignalStore


class SignalStoreResource(ConfigurableResource):
    """Where signals live and how they are sampled.

    `url`: a SQLAlchemy URL (sqlite:///PATH or postgresql://USER@HOST/DB); empty means
    $SHADOW_DAGSTER_STORE_URL, else SQLite in DAGSTER_HOME.
    """

    url: str | None = Field(default=None, description="signal store database URL (default: SQLite in DAGSTER_HOME)")
    resolution_ms: int = Field(default=1000, description="TSA resolution in milliseconds, 1 to 60000")
    retention_days: float = Field(default=30.0, description="rows older than this many days are deleted")
    page_size: int = Field(default=2000, description="event log records read per page")
    tick_budget_seconds: float = Field(default=20.0, description="time an ingestion tick may spend")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value in (None, "") else normalise_url(value)

    @field_validator("resolution_ms", mode="before")
    @classmethod
    def _resolution(cls, value: int) -> int:
        return validate_resolution_ms(value)

    @field_validator("retention_days", "tick_budget_seconds")
    @classmethod
    def _positive(cls, value: float, info) -> float:
        if not value > 0:
            raise ValueError(f"{info.field_name} must be positive, got {value!r}")
        return value

    @field_validator("page_size")
    @classmethod
    def _page(cls, value: int) -> int:
        if not 1 <= value <= 100_000:
            raise ValueError(f"page_size must be between 1 and 100000, got {value!r}")
        return value

    def storage(self) -> ShadowStorage:
        """The storage this resource names (its URL; every other location at its default)."""
        return ShadowStorage(signal_store_url=self.url)

    def resolved_url(self) -> str:
        return self.storage().location("signal_store_url")

    def get_store(self) -> SignalStore:
        """The process-wide store for this URL (engines are reused across ticks)."""
        return self.storage().signal_store(self.retention_days)
