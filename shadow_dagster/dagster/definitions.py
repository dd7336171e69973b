"""`shadow_definitions(...)`: everything shadow-dagster adds to a code location, in one call."""

from __future__ import annotations

from dagster import Definitions

from shadow_dagster.dagster.resources import SignalStoreResource
from shadow_dagster.dagster.sensors import build_signal_sensor

STORE_RESOURCE_KEY = "shadow_signal_store"


def shadow_definitions(
    *,
    store_url: str | None = None,
    resolution_ms: int = 1000,
    retention_days: float = 30.0,
    page_size: int = 2000,
    sensor_interval_seconds: int = 15,
) -> Definitions:
    """Definitions to merge into yours: `Definitions.merge(my_defs, shadow_definitions())`.

    Invalid values (resolution outside 1 ms..60 s, a malformed URL) raise here, at load time.
    """
    store = SignalStoreResource(
        url=store_url, resolution_ms=resolution_ms, retention_days=retention_days, page_size=page_size
    )
    return Definitions(
        sensors=[build_signal_sensor(minimum_interval_seconds=sensor_interval_seconds)],
        resources={STORE_RESOURCE_KEY: store},
    )
