import dagster as dg

from warehouse_project.defs.partitions import monthly_partition, weekly_partition

trip_update_job = dg.define_asset_job(
    name="trip_update_job",
    partitions_def=monthly_partition,
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("trips_by_week", "weekly_summary"),
)
weekly_update_job = dg.define_asset_job(name="weekly_update_job", partitions_def=weekly_partition,
                                        selection=dg.AssetSelection.assets("trips_by_week"))
publish_job = dg.define_asset_job(name="publish_job", selection=dg.AssetSelection.assets("weekly_summary"))

trip_update_schedule = dg.build_schedule_from_partitioned_job(trip_update_job)
weekly_update_schedule = dg.build_schedule_from_partitioned_job(weekly_update_job)
