"""Raw files and warehouse tables: ingestion, so critical (never pre-executed)."""

import os

import dagster as dg
import duckdb

from shadow_dagster import ShadowDuckDBResource, ShadowFiles
from warehouse_project.defs.partitions import monthly_partition

ZONES = [(1, "Manhattan", "Midtown"), (2, "Manhattan", "Harlem"), (3, "Brooklyn", "Williamsburg"),
         (4, "Queens", "Astoria"), (5, "Bronx", "Fordham"), (6, "Manhattan", "Chelsea")]


def trips_per_month() -> int:
    return int(os.environ.get("WAREHOUSE_TRIPS_PER_MONTH", "200000"))


def _sql_path(path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


@dg.asset(partitions_def=monthly_partition, group_name="raw_files", code_version="1")
def taxi_trips_file(context: dg.AssetExecutionContext, files: ShadowFiles) -> dg.MaterializeResult:
    """The month's trip records as a CSV file (generated deterministically from the month)."""
    month = context.partition_key[:-3]
    path = files.path("raw", f"taxi_trips_{month}.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = int(month.replace("-", ""))
    with duckdb.connect() as conn:
        conn.execute(f"""
            COPY (
              SELECT range AS trip_id,
                     DATE '{context.partition_key}' + INTERVAL (hash(range, {seed}) % 28) DAY
                       + INTERVAL (hash(range, {seed}, 1) % 86400) SECOND AS pickup_datetime,
                     1 + hash(range, {seed}, 2) % {len(ZONES)} AS zone_id,
                     round(1 + (hash(range, {seed}, 3) % 3000) / 100.0, 2) AS trip_distance,
                     round(3 + (hash(range, {seed}, 4) % 6000) / 100.0, 2) AS total_amount
              FROM range({trips_per_month()})
            ) TO {_sql_path(path)} (HEADER)""")
    return dg.MaterializeResult(metadata={"rows": trips_per_month(), "path": dg.MetadataValue.path(str(path))})


@dg.asset(group_name="raw_files", code_version="1")
def taxi_zones_file(files: ShadowFiles) -> dg.MaterializeResult:
    path = files.path("raw", "taxi_zones.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("zone_id,borough,zone\n" + "".join(f"{i},{b},{z}\n" for i, b, z in ZONES))
    return dg.MaterializeResult(metadata={"rows": len(ZONES)})


@dg.asset(deps=[taxi_trips_file], partitions_def=monthly_partition, group_name="ingested", code_version="1")
def taxi_trips(context: dg.AssetExecutionContext, database: ShadowDuckDBResource,
               files: ShadowFiles) -> dg.MaterializeResult:
    """One month of trips in the `trips` table (replaced partition by partition)."""
    month = context.partition_key[:-3]
    source = files.path("raw", f"taxi_trips_{month}.csv")
    with database.get_connection() as conn:
        conn.execute("""CREATE TABLE IF NOT EXISTS trips (trip_id BIGINT, pickup_datetime TIMESTAMP,
                        zone_id INTEGER, trip_distance DOUBLE, total_amount DOUBLE, partition_date VARCHAR)""")
        conn.execute("DELETE FROM trips WHERE partition_date = ?", [month])
        conn.execute(f"INSERT INTO trips SELECT *, '{month}' FROM read_csv({_sql_path(source)}, header = true)")
        rows = conn.execute("SELECT count(*) FROM trips WHERE partition_date = ?", [month]).fetchone()[0]
    return dg.MaterializeResult(metadata={"rows": rows})


@dg.asset(deps=[taxi_zones_file], group_name="ingested", code_version="1")
def taxi_zones(database: ShadowDuckDBResource, files: ShadowFiles) -> dg.MaterializeResult:
    with database.get_connection() as conn:
        conn.execute(f"CREATE OR REPLACE TABLE zones AS SELECT * FROM "
                     f"read_csv({_sql_path(files.path('raw', 'taxi_zones.csv'))}, header = true)")
    return dg.MaterializeResult(metadata={"rows": len(ZONES)})
