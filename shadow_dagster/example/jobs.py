"""The example's jobs: A (ingest, assets), B (train and publish, assets), C (notify, ops)."""

from dagster import AssetSelection, define_asset_job

from .common import DAILY
from .notify import notify_job

ingest_job = define_asset_job("ingest_job", selection=AssetSelection.groups("ingest"),
                              partitions_def=DAILY, description="Job A: orders to warehouse and features.")
train_job = define_asset_job("train_job", selection=AssetSelection.groups("modeling"),
                             partitions_def=DAILY, description="Job B: model, forecast, report, publish.")

JOBS = [ingest_job, train_job, notify_job]
