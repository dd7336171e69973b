"""A small real Dagster workload whose event log the fault trials ingest (no test-only imports)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from shadow_dagster_bench.home import write_instance_yaml
from shadow_dagster import report_intensity

_ATTEMPTS: dict[str, int] = {}


@dg.op(out={"left": dg.Out(is_required=False), "right": dg.Out(is_required=False)})
def split(context):
    report_intensity(context, 0.5)
    yield dg.Output(1, "left", metadata={"shadow_dagster/output_bytes": 4096})


@dg.op
def left_step(x):
    return x + 1


@dg.op
def right_step(x):
    return x + 2


@dg.op(retry_policy=dg.RetryPolicy(max_retries=1))
def flaky_step(context, x):
    _ATTEMPTS[context.run_id] = _ATTEMPTS.get(context.run_id, 0) + 1
    if _ATTEMPTS[context.run_id] == 1:
        raise RuntimeError("transient failure, retried")
    return x


@dg.job(tags={"shadow_dagster/workflow": "reliability"})
def reliability_job():
    left, right = split()
    flaky_step(left_step(left))
    right_step(right)


def consolidated_home(home: str | Path) -> Path:
    """A DAGSTER_HOME whose dagster.yaml selects the consolidated SQLite event log."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    write_instance_yaml(home)
    return home


def build_event_log(instance: dg.DagsterInstance, runs: int) -> int:
    """Execute the workload `runs` times into `instance`; returns the event log's record count."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    for _ in range(runs):
        reliability_job.execute_in_process(instance=instance, run_config=quiet)
    return len(instance.event_log_storage.get_logs_for_all_runs_by_log_id(after_cursor=-1))
