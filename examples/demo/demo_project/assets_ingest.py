"""Job A's assets: pull orders, clean them, branch full/incremental snapshot, load the warehouse."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetOut,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)

from shadow_dagster.dagster.reuse import shadow_reusable

from . import data
from .common import DAILY, NON_CRITICAL, versioned
from .resources import ExampleSettings, ExternalSystem

GROUP = "ingest"


@asset(partitions_def=DAILY, group_name=GROUP, code_version="1", op_tags=NON_CRITICAL,
       tags=NON_CRITICAL, kinds={"pandas"})
@shadow_reusable
def raw_orders(context: AssetExecutionContext, settings: ExampleSettings) -> Output[pd.DataFrame]:
    """The day's orders pulled from the (generated) source system; read-only, so non-critical."""
    frame = data.generate_orders(data.day(context.partition_key), settings.scale)
    return versioned(frame, rows=len(frame))


@asset(partitions_def=DAILY, group_name=GROUP, code_version="1", op_tags=NON_CRITICAL,
       tags=NON_CRITICAL, kinds={"pandas"})
@shadow_reusable
def clean_orders(context: AssetExecutionContext, raw_orders: pd.DataFrame) -> Output[pd.DataFrame]:
    """Deduplicated orders without returns, prices imputed, revenue and hour added."""
    frame = data.clean_orders(raw_orders)
    return versioned(frame, rows=len(frame), dropped=len(raw_orders) - len(frame),
                     revenue=float(frame["revenue"].sum()))


@multi_asset(
    name="customer_snapshot",
    partitions_def=DAILY,
    group_name=GROUP,
    op_tags=NON_CRITICAL,
    can_subset=False,
    outs={
        "customer_snapshot_full": AssetOut(is_required=False, code_version="1", tags=NON_CRITICAL,
                                           description="Weekend path: rebuilt from 28 days."),
        "customer_snapshot_delta": AssetOut(is_required=False, code_version="1", tags=NON_CRITICAL,
                                            description="Weekday path: today's customers only."),
    },
)
def customer_snapshot(context: AssetExecutionContext, settings: ExampleSettings, clean_orders: pd.DataFrame):
    """The branch: weekends rebuild the snapshot from the full history, weekdays compute a delta."""
    date = data.day(context.partition_key)
    if data.is_full_refresh_day(context.partition_key):
        snap = data.customer_snapshot(data.history(date, settings.scale), date)
        yield versioned(snap, "customer_snapshot_full", rows=len(snap), path="full")
    else:
        snap = data.customer_snapshot(clean_orders, date)
        yield versioned(snap, "customer_snapshot_delta", rows=len(snap), path="delta")


def _load(context, external: ExternalSystem, frame: pd.DataFrame, name: str) -> MaterializeResult:
    target = external.load_table(context.instance, f"warehouse/{name}_{context.partition_key}.csv", frame)
    return MaterializeResult(metadata={"path": MetadataValue.path(str(target)), "rows": len(frame)},
                             data_version=DataVersion(data.content_hash(frame)))


@asset(partitions_def=DAILY, group_name=GROUP, code_version="1", kinds={"csv"})
def warehouse_full_load(context: AssetExecutionContext, external: ExternalSystem,
                        customer_snapshot_full: pd.DataFrame) -> MaterializeResult:
    """Critical: replaces the warehouse's customer table (an external write)."""
    return _load(context, external, customer_snapshot_full, "customers_full")


@asset(partitions_def=DAILY, group_name=GROUP, code_version="1", kinds={"csv"})
def warehouse_incremental_load(context: AssetExecutionContext, external: ExternalSystem,
                               customer_snapshot_delta: pd.DataFrame) -> MaterializeResult:
    """Critical: appends the day's delta to the warehouse (an external write)."""
    return _load(context, external, customer_snapshot_delta, "customers_delta")


@asset(partitions_def=DAILY, group_name=GROUP, code_version="1", op_tags=NON_CRITICAL,
       tags=NON_CRITICAL, kinds={"pandas"})
@shadow_reusable
def demand_features(context: AssetExecutionContext, settings: ExampleSettings,
                    clean_orders: pd.DataFrame) -> Output[pd.DataFrame]:
    """Expensive: per-product daily demand over 28 days with lags, rolling stats, weekday dummies."""
    frame = data.demand_features(data.day(context.partition_key), settings.scale, clean_orders)
    return versioned(frame, rows=len(frame), columns=len(frame.columns))


ASSETS = [raw_orders, clean_orders, customer_snapshot, warehouse_full_load, warehouse_incremental_load,
          demand_features]
