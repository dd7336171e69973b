"""Job C, an op job: compose the day's digest from the published forecast and send it."""

import json

import pandas as pd
from dagster import OpExecutionContext, job, op

from .common import DAILY, NON_CRITICAL
from .resources import ExternalSystem


@op(tags=NON_CRITICAL)
def compose_digest(context: OpExecutionContext, external: ExternalSystem) -> dict:
    """Reads the published forecast (read-only) and summarises the top products."""
    pk = context.partition_key
    source = external.path(context.instance, f"published/forecast_{pk}.csv")
    frame = pd.read_csv(source)
    top = frame.nlargest(5, "forecast_units")
    return {"partition": pk, "total_units": float(frame["forecast_units"].sum()),
            "top_products": [{"product_id": int(p), "units": float(u)}
                             for p, u in zip(top["product_id"], top["forecast_units"])]}


@op
def send_digest(context: OpExecutionContext, external: ExternalSystem, digest: dict) -> None:
    """Critical: drops the digest into the outbox (stands in for an email)."""
    target = external.write_text(context.instance, f"outbox/digest_{context.partition_key}.json",
                                 json.dumps(digest, indent=2))
    context.log.info(f"digest sent to {target}")


@job(name="notify_job", partitions_def=DAILY, tags={"team": "forecasting"})
def notify_job():
    send_digest(compose_digest())
