"""Constants shared by the example's assets, jobs, sensor and simulator."""

from __future__ import annotations

from dagster import DailyPartitionsDefinition, DataVersion, Output

from shadow_dagster.tags import CRITICAL_TAG

from .data import content_hash

WORKFLOW_NAME = "daily_pipeline"
START_DATE = "2024-01-01"
DAILY = DailyPartitionsDefinition(start_date=START_DATE)

# Steps with only asset-store effects are marked safe to pre-execute; every other step stays
# critical by default (no tag), as shadow-dagster requires.
NON_CRITICAL = {CRITICAL_TAG: "false"}


def workflow_key(partition_key: str, instance_no: int = 1) -> str:
    """`daily_pipeline:<partition>`; a day's further workflow instances get `#<n>` appended."""
    key = f"{WORKFLOW_NAME}:{partition_key}"
    return key if instance_no == 1 else f"{key}#{instance_no}"


def versioned(value, output_name: str = "result", **metadata) -> Output:
    """An Output whose data version is the content hash, so provenance sees what really changed."""
    return Output(value, output_name=output_name, data_version=DataVersion(content_hash(value)),
                  metadata=metadata)
