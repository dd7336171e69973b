"""Job B's assets: train the demand model, forecast, render the report, publish."""

import pandas as pd
from dagster import AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue, Output, asset

from shadow_dagster.dagster.reuse import shadow_reusable

from . import data
from .common import DAILY, NON_CRITICAL, versioned
from .resources import ExampleSettings, ExternalSystem

GROUP = "modeling"


@asset(partitions_def=DAILY, group_name=GROUP, code_version="1", op_tags=NON_CRITICAL,
       tags=NON_CRITICAL, kinds={"numpy"})
@shadow_reusable
def demand_model(context: AssetExecutionContext, settings: ExampleSettings,
                 demand_features: pd.DataFrame) -> Output[dict]:
    """Expensive: ridge regression on random Fourier features, alpha by 5-fold cross-validation."""
    model = data.train_demand_model(demand_features, settings.scale)
    return versioned(model, cv_rmse=model["cv_rmse"], naive_rmse=model["naive_rmse"], alpha=model["alpha"],
                     n_train=model["n_train"], dim=model["dim"])


@asset(partitions_def=DAILY, group_name=GROUP, code_version="1", op_tags=NON_CRITICAL,
       tags=NON_CRITICAL, kinds={"pandas"})
@shadow_reusable
def demand_forecast(context: AssetExecutionContext, demand_model: dict,
                    demand_features: pd.DataFrame) -> Output[pd.DataFrame]:
    """Next-day units per product."""
    frame = data.forecast(demand_model, demand_features)
    return versioned(frame, products=len(frame), total_units=float(frame["forecast_units"].sum()))


@asset(partitions_def=DAILY, group_name=GROUP, code_version="1", op_tags=NON_CRITICAL,
       tags=NON_CRITICAL, kinds={"html"})
@shadow_reusable
def forecast_report(context: AssetExecutionContext, demand_forecast: pd.DataFrame,
                    demand_model: dict) -> Output[str]:
    """The HTML report (chart and table), kept in the asset store until it is published."""
    report = data.render_report(demand_forecast, context.partition_key, demand_model["cv_rmse"])
    return versioned(report, bytes=len(report.encode()))


@asset(partitions_def=DAILY, group_name=GROUP, code_version="1", kinds={"html", "csv"})
def published_forecast(context: AssetExecutionContext, external: ExternalSystem,
                       demand_forecast: pd.DataFrame, forecast_report: str) -> MaterializeResult:
    """Critical: publishes the forecast and the report to the website folder (external writes)."""
    pk = context.partition_key
    csv = external.write_csv(context.instance, f"published/forecast_{pk}.csv", demand_forecast)
    page = external.write_text(context.instance, f"published/report_{pk}.html", forecast_report)
    return MaterializeResult(metadata={"forecast": MetadataValue.path(str(csv)),
                                       "report": MetadataValue.path(str(page))},
                             data_version=DataVersion(data.content_hash([demand_forecast, forecast_report])))


ASSETS = [demand_model, demand_forecast, forecast_report, published_forecast]
