"""Seed a history: execute real runs of the example's chained jobs for past daily partitions."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from dagster import DagsterInstance, Definitions

from shadow_dagster.tags import WORKFLOW_TAG

from .common import DAILY, workflow_key
from .resources import FAST_SCALE, ExampleSettings

FIRST_JOB = "ingest_job"
Progress = Callable[[int, int, str], None]      # (runs done, runs expected, description)


def partition_keys(days: int, end: dt.date | None = None) -> list[str]:
    """The `days` daily partition keys ending at `end` (default: yesterday, the latest partition)."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    end = end or (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1))
    keys = [(end - dt.timedelta(days=i)).isoformat() for i in reversed(range(days))]
    first = DAILY.get_first_partition_key()
    if keys[0] < first:
        raise ValueError(f"partition {keys[0]} is before the example's first partition {first}; use fewer days")
    return keys


def simulate(instance: DagsterInstance, days: int, runs_per_day: int, fast: bool = True,
             progress: Progress | None = None, *, end: dt.date | None = None,
             defs: Definitions | None = None, chain_delay_s: float = 0.0) -> list[str]:
    """Run `runs_per_day` workflow instances for each of the last `days` partitions; return run ids.

    Each workflow instance is ingest_job, then whatever the chain sensor's logic requests next
    (train_job, then notify_job), all tagged with one workflow key. Weekend partitions take the
    full-refresh branch, weekdays the incremental one. `fast` scales compute down (FAST_SCALE).
    `defs` defaults to the example's; pass the merged Definitions to run with the integration.
    A failed run raises (dagster's DagsterExecutionError family) after earlier runs are recorded.
    `chain_delay_s` really waits that long before each chained run, as the chain sensor's interval
    and the run launcher make a deployed chain wait; 0 chains the runs back to back.
    """
    from .chain import chain_request
    from .definitions import defs as example_defs

    if not (isinstance(chain_delay_s, (int, float)) and 0 <= chain_delay_s <= 600):
        raise ValueError(f"chain_delay_s must be between 0 and 600 seconds, got {chain_delay_s!r}")
    if runs_per_day < 1:
        raise ValueError(f"runs_per_day must be at least 1, got {runs_per_day}")
    defs = defs or example_defs
    keys = partition_keys(days, end)
    resources = {"settings": ExampleSettings(scale=FAST_SCALE)} if fast else None
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # events are still stored
    total = len(keys) * runs_per_day * 3
    run_ids: list[str] = []
    for key in keys:
        for n in range(1, runs_per_day + 1):
            job_name, tags = FIRST_JOB, {WORKFLOW_TAG: workflow_key(key, n)}
            while job_name:
                job = defs.resolve_job_def(job_name)
                result = job.execute_in_process(run_config=quiet, instance=instance, partition_key=key,
                                                tags=tags, resources=resources)
                run_ids.append(result.run_id)
                if progress:
                    progress(len(run_ids), total, f"{job_name} {key} ({tags[WORKFLOW_TAG]})")
                request = chain_request(instance.get_run_by_id(result.run_id))
                job_name, tags = (request.job_name, dict(request.tags)) if request else (None, {})
                if job_name and chain_delay_s > 0:
                    time.sleep(chain_delay_s)
    return run_ids


def main(argv: list[str] | None = None) -> int:
    """`python -m demo_project.simulate --days N --runs-per-day M [--full] [--if-empty]`."""
    import argparse

    from dagster import DagsterRunStatus, RunsFilter

    parser = argparse.ArgumentParser(description="Seed the DAGSTER_HOME instance with example runs.")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--runs-per-day", type=int, default=1)
    parser.add_argument("--full", action="store_true", help="compute at $SHADOW_DAGSTER_EXAMPLE_SCALE, "
                        "not the fast scale")
    parser.add_argument("--if-empty", action="store_true", help="do nothing when ingest_job already ran")
    parser.add_argument("--chain-delay", type=float, default=0.0,
                        help="seconds to wait before each chained run, as a deployed chain sensor does")
    args = parser.parse_args(argv)
    with DagsterInstance.get() as instance:
        done = instance.get_run_records(RunsFilter(job_name=FIRST_JOB, statuses=[DagsterRunStatus.SUCCESS]),
                                        limit=1)
        if args.if_empty and done:
            print("history present, not seeding")
            return 0

        def show(i: int, total: int, what: str) -> None:
            print(f"[{i}/{total}] {what}", flush=True)

        ids = simulate(instance, args.days, args.runs_per_day, fast=not args.full, progress=show,
                       chain_delay_s=args.chain_delay)
    print(f"seeded {len(ids)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
