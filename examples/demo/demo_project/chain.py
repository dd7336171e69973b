"""The chain sensor: job A's success launches job B, B's launches C, under one workflow key."""

import datetime as dt
import json

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from shadow_dagster.dagster.compat import PARTITION_NAME_TAG

from shadow_dagster.tags import WORKFLOW_TAG, is_shadow_run

from .common import WORKFLOW_NAME
from .jobs import notify_job, train_job

CHAIN = {"ingest_job": "train_job", "train_job": "notify_job"}
UPSTREAM_RUN_TAG = "shadow_dagster_example/upstream_run"
OVERLAP_SECONDS = 2.0        # re-read a little behind the cursor; dedup makes it harmless
BATCH = 100


def workflow_of(run) -> str:
    """The run's workflow key: its tag, else `daily_pipeline:<partition>#<run id prefix>`."""
    tag = run.tags.get(WORKFLOW_TAG)
    if tag:
        return tag
    return f"{WORKFLOW_NAME}:{run.tags.get(PARTITION_NAME_TAG, 'unpartitioned')}#{run.run_id[:8]}"


def chain_request(run) -> RunRequest | None:
    """The next job's RunRequest after `run` succeeded, or None (end of chain, shadow, failed)."""
    downstream = CHAIN.get(run.job_name)
    partition = run.tags.get(PARTITION_NAME_TAG)
    if downstream is None or partition is None or run.status != DagsterRunStatus.SUCCESS:
        return None
    if is_shadow_run(run.tags):
        return None
    return RunRequest(
        run_key=f"{downstream}:{run.run_id}",
        job_name=downstream,
        partition_key=partition,
        tags={WORKFLOW_TAG: workflow_of(run), UPSTREAM_RUN_TAG: run.run_id},
    )


def already_chained(instance, request: RunRequest) -> bool:
    filters = RunsFilter(job_name=request.job_name, tags={UPSTREAM_RUN_TAG: request.tags[UPSTREAM_RUN_TAG]})
    return bool(instance.get_run_records(filters=filters, limit=1))


@sensor(name="daily_pipeline_chain", jobs=[train_job, notify_job], minimum_interval_seconds=5,
        default_status=DefaultSensorStatus.RUNNING,
        description="Launches train_job after ingest_job, notify_job after train_job (same partition "
                    "and workflow key).")
def daily_pipeline_chain(context: SensorEvaluationContext):
    cursor = json.loads(context.cursor) if context.cursor else {}
    requests = []
    for upstream in CHAIN:
        since = cursor.get(upstream)
        after = dt.datetime.fromtimestamp(since - OVERLAP_SECONDS, dt.timezone.utc) if since else None
        records = context.instance.get_run_records(
            filters=RunsFilter(job_name=upstream, statuses=[DagsterRunStatus.SUCCESS], updated_after=after),
            order_by="update_timestamp", ascending=True, limit=BATCH,
        )
        for record in records:
            cursor[upstream] = max(cursor.get(upstream, 0.0), record.update_timestamp.timestamp())
            request = chain_request(record.dagster_run)
            if request is not None and not already_chained(context.instance, request):
                requests.append(request)
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    if not requests:
        yield SkipReason("no newly succeeded upstream run to chain")
    yield from requests
