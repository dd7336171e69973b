import dagster as dg

from warehouse_project.defs.jobs import publish_job


@dg.asset_sensor(asset_key=dg.AssetKey("trips_by_week"), job=publish_job)
def weekly_published_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """Publish the weekly summary after every new materialization of trips_by_week."""
    yield dg.RunRequest(run_key=f"trips_by_week:{asset_event.run_id}:{asset_event.timestamp}")
