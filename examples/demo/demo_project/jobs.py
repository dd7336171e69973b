"""The example's jobs: A (ingest, assets), B (train and publish, assets), C (notify, ops)."""

from dagster import AssetSelection, define_asset_job, in_process_executor

from .common import DAILY
from .notify import notify_job

# Steps run in the run worker's process: they are short, and seeded history (executed in process)
# then times steps the way live runs do, so the fingerprint's ETAs hold for live runs.
ingest_job = define_asset_job("ingest_job", selection=AssetSelection.groups("ingest"), partitions_def=DAILY,
                              executor_def=in_process_executor,
                              description="Job A: orders to warehouse and features.")
train_job = define_asset_job("train_job", selection=AssetSelection.groups("modeling"), partitions_def=DAILY,
                             executor_def=in_process_executor,
                             description="Job B: model, forecast, report, publish.")

JOBS = [ingest_job, train_job, notify_job]
