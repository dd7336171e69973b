"""The signal sensor: one ingestion pass per tick, cursor shown in the Dagster UI."""

from __future__ import annotations

from dagster import DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor

from shadow_dagster.dagster.ingest import ingest
from shadow_dagster.dagster.resources import SignalStoreResource

SIGNAL_SENSOR_NAME = "shadow_signal_sensor"


def build_signal_sensor(
    *, name: str = SIGNAL_SENSOR_NAME, minimum_interval_seconds: int = 15, running: bool = True
):
    """A sensor that turns new event log records into signals on every tick.

    The store keeps the authoritative cursor, committed with each page of rows; the sensor's own
    cursor mirrors it so that the UI shows how far ingestion got. An unreachable store fails
    the tick with the store's message and moves no cursor.
    """

    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED,
        description="shadow-dagster: turns run and step events into temporal signals",
    )
    def _signal_sensor(context: SensorEvaluationContext, shadow_signal_store: SignalStoreResource):
        store = shadow_signal_store.get_store()
        report = ingest(
            context.instance,
            store,
            resolution_ms=shadow_signal_store.resolution_ms,
            page_size=shadow_signal_store.page_size,
            max_seconds=shadow_signal_store.tick_budget_seconds,
        )
        report.retention_deleted = store.apply_retention()
        context.update_cursor(str(report.cursor_after))
        for storage_id, reason in report.skipped[:20]:
            context.log.warning(f"skipped event log record storage_id={storage_id}: {reason}")
        return SkipReason(report.summary())

    return _signal_sensor
