"""Metrics and reports. The metrics only read the warehouse and write their own table or file, so
they are marked non-critical (safe to pre-execute); what publishes to readers stays critical."""

import csv
import io
import json
import os
import time

import dagster as dg

from shadow_dagster import ShadowDuckDBResource, ShadowFiles
from warehouse_project.defs.assets.trips import taxi_trips, taxi_zones
from warehouse_project.defs.partitions import weekly_partition

SAFE = {"shadow_dagster/critical": "false"}


def remote_warehouse_latency() -> None:
    """WAREHOUSE_QUERY_S (default 0): the seconds a remote warehouse takes to answer a metric query.
    The local DuckDB file answers at once; this stands for the warehouse a real project queries."""
    raw = os.environ.get("WAREHOUSE_QUERY_S", "0")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < 3600:
        raise ValueError(f"WAREHOUSE_QUERY_S must be a number of seconds in [0, 3600), got {raw!r}")
    time.sleep(seconds)


@dg.asset(deps=[taxi_trips, taxi_zones], group_name="metrics", code_version="1", tags=SAFE)
def manhattan_stats(database: ShadowDuckDBResource, files: ShadowFiles) -> dg.MaterializeResult:
    """Trips and fares per Manhattan zone, as a table and a JSON file."""
    with database.get_connection() as conn:
        conn.execute("""CREATE OR REPLACE TABLE manhattan_stats AS
                        SELECT z.zone, count(*) AS trips, round(sum(t.total_amount), 2) AS fares
                        FROM trips t JOIN zones z USING (zone_id)
                        WHERE z.borough = 'Manhattan' GROUP BY z.zone ORDER BY z.zone""")
        rows = conn.execute("SELECT zone, trips, fares FROM manhattan_stats ORDER BY zone").fetchall()
        remote_warehouse_latency()
    path = files.path("outputs", "manhattan_stats.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"zone": z, "trips": n, "fares": f} for z, n, f in rows], indent=1))
    return dg.MaterializeResult(metadata={"zones": len(rows)})


@dg.asset(deps=[manhattan_stats], group_name="reports", automation_condition=dg.AutomationCondition.eager())
def manhattan_report(files: ShadowFiles) -> dg.MaterializeResult:
    """Published text report, refreshed eagerly whenever manhattan_stats changes (critical)."""
    stats = json.loads(files.path("outputs", "manhattan_stats.json").read_text())
    lines = [f"{s['zone']}: {s['trips']} trips, ${s['fares']:.2f}" for s in stats]
    files.path("outputs", "manhattan_report.txt").write_text("\n".join(lines) + "\n")
    return dg.MaterializeResult(metadata={"zones": len(stats)})


@dg.asset(deps=[taxi_trips], partitions_def=weekly_partition, group_name="metrics", code_version="1", tags=SAFE)
def trips_by_week(context: dg.AssetExecutionContext, database: ShadowDuckDBResource,
                  files: ShadowFiles) -> dg.MaterializeResult:
    """The week's totals, upserted into one CSV shared by all weeks (read, replace the week's row, write)."""
    window = context.partition_time_window
    with database.get_connection() as conn:
        trips, amount, distance = conn.execute(
            "SELECT count(*), round(coalesce(sum(total_amount), 0), 2), round(coalesce(sum(trip_distance), 0), 2) "
            "FROM trips WHERE pickup_datetime >= ? AND pickup_datetime < ?",
            [window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)]).fetchone()
        remote_warehouse_latency()
    path = files.path("outputs", "trips_by_week.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(io.StringIO(path.read_text()))) if path.exists() else []
    rows = [r for r in rows if r["period"] != context.partition_key]
    rows.append({"period": context.partition_key, "num_trips": trips, "total_amount": amount,
                 "trip_distance": distance})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["period", "num_trips", "total_amount", "trip_distance"])
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: r["period"]))
    path.write_text(out.getvalue())
    return dg.MaterializeResult(metadata={"num_trips": trips})


@dg.asset(deps=[trips_by_week], group_name="reports")
def weekly_summary(files: ShadowFiles) -> dg.MaterializeResult:
    """Published summary of all weeks, rebuilt by an asset sensor when trips_by_week changes (critical)."""
    rows = list(csv.DictReader(io.StringIO(files.path("outputs", "trips_by_week.csv").read_text())))
    total = sum(int(r["num_trips"]) for r in rows)
    files.path("outputs", "weekly_summary.txt").write_text(f"{len(rows)} weeks, {total} trips\n")
    return dg.MaterializeResult(metadata={"weeks": len(rows), "trips": total})
