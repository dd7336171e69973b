"""The signal sensor: one ingestion pass per tick, cursor shown in the Dagster UI."""

from __future__ import annotations

from dagster import AssetObservation, DefaultSensorStatus, SensorEvaluationContext, SensorResult, sensor

from shadow_dagster.dagster.history_assets import SIGNALS_KEY
from shadow_dagster.dagster.resources import SignalStoreResource

SIGNAL_SENSOR_NAME = "shadow_signal_sensor"


def build_signal_sensor(
    *, name: str = SIGNAL_SENSOR_NAME, minimum_interval_seconds: int = 15, running: bool = True
):
    """A sensor that turns new event log records into signals on every tick.

    The store keeps the authoritative cursor, committed with each page of rows; the sensor's own
    cursor mirrors it so that the UI shows how far ingestion got. An unreachable store fails
    the tick with the store's message and moves no cursor.

    A tick that wrote signal rows records an AssetObservation of the signals asset (rows, events,
    cursor as metadata: the asset's page lists every ingesting tick and plots the numbers) and
    logs its summary to the tick's log. Dagster 1.13 records a sensor tick as SUCCESS only when it
    submitted runs: this sensor requests none, so its ticks show as skipped in the tick history
    whatever they did, and the skip message says what was ingested (or that there was nothing).
    """

    @sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED,
        description="shadow-dagster: turns run and step events into temporal signals",
    )
    def _signal_sensor(context: SensorEvaluationContext, shadow_signal_store: SignalStoreResource):
        from shadow_dagster.dagster.ingest import ingest
        from shadow_dagster.dagster.instances import family_resolver

        store = shadow_signal_store.get_store()
        report = ingest(
            context.instance,
            store,
            resolution_ms=shadow_signal_store.resolution_ms,
            page_size=shadow_signal_store.page_size,
            max_seconds=shadow_signal_store.tick_budget_seconds,
            family_of=family_resolver(context.repository_def),
        )
        report.retention_deleted = store.apply_retention()
        for storage_id, reason in report.skipped[:20]:
            context.log.warning(f"skipped event log record storage_id={storage_id}: {reason}")
        context.update_cursor(str(report.cursor_after))
        if not report.rows:
            # only run events make rows: the observation a tick records is not ingested again
            other = f" ({report.events} other events read)" if report.events else ""
            return SensorResult(skip_reason=f"nothing to ingest: no new run or step events after storage id "
                                            f"{report.cursor_before}{other}")
        summary = report.summary()
        context.log.info(summary)
        observation = AssetObservation(
            asset_key=SIGNALS_KEY,
            description=summary,
            metadata={"rows": report.rows, "events": report.events, "pages": report.pages,
                      "cursor": report.cursor_after, "skipped_malformed": len(report.skipped),
                      "backlog_left": report.backlog_left, "retention_deleted": report.retention_deleted,
                      "seconds": round(report.seconds, 3)},
        )
        return SensorResult(skip_reason=f"{summary[0].upper()}{summary[1:]} (ingestion only: no run to request)",
                            asset_events=[observation])

    return _signal_sensor
