"""Which workflow instance a run belongs to (pure: no Dagster import).

An instance is a chain of runs that belong together, such as job A and then job B for one
partition. The rules, applied to runs in creation order:

- a `shadow_dagster/workflow` tag names the instance outright;
- a re-execution (`dagster/parent_run_id`) joins its parent's instance (an unpartitioned one
  its root run's);
- a run with a partition key joins the newest instance of the same partition, partitions
  definition and backfill, unless that instance already holds a run of the same job. Then it
  is a re-run, and it starts an instance of its own. Key: `<partition>@<anchor>`;
- any other run is an instance of its own, keyed by its run id (`@<anchor>` when scheduled).

The anchor of an instance is its first run: the run id, or `<schedule>#<tick>` for a run a
schedule launched (Dagster's schedule name and scheduled execution time tags). A scheduled run's
key is therefore known before the run exists, so the speculative sensor can plan for it.

So a re-run or a backfill of a partition never joins the runs it repeats, and a monthly and a
weekly job whose keys coincide never merge (when `family_of` can tell their partitions apart).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from shadow_dagster.tags import PARTITION_TAG, WORKFLOW_TAG

PARENT_RUN_TAG = "dagster/parent_run_id"
SCHEDULE_TAG = "dagster/schedule_name"
SCHEDULED_AT_TAG = ".dagster/scheduled_execution_time"   # ISO 8601, UTC, as Dagster's scheduler writes it
ROOT_RUN_TAG = "dagster/root_run_id"
BACKFILL_TAG = "dagster/backfill"
SEP = "@"
TICK = "#"


@dataclass(frozen=True)
class RunFacts:
    """What the rules read of a run."""

    run_id: str
    job_name: str | None
    created: float
    tags: Mapping[str, str]

    @property
    def partition(self) -> str | None:
        return self.tags.get(PARTITION_TAG) or None


def explicit_key(tags: Mapping[str, str]) -> str | None:
    return tags.get(WORKFLOW_TAG) or None


def schedule_anchor(tags: Mapping[str, str]) -> str | None:
    """`<schedule>#<tick>` for a run a schedule launched, else None."""
    name, at = tags.get(SCHEDULE_TAG), tags.get(SCHEDULED_AT_TAG)
    return f"{name}{TICK}{at}" if name and at else None


def tick_iso(tick_s: float) -> str:
    """A schedule tick (epoch s) written as Dagster's scheduler writes it in SCHEDULED_AT_TAG."""
    return datetime.fromtimestamp(tick_s, tz=timezone.utc).isoformat()


def scheduled_key(schedule: str, tick_iso: str, partition: str | None) -> str:
    """The key the run `schedule` launches at `tick_iso` will have, when it starts an instance."""
    return f"{partition or ''}{SEP}{schedule}{TICK}{tick_iso}"


def partition_of_key(key: str) -> tuple[str, str] | None:
    """(partition, anchor) of a partition instance key; None for any other key."""
    partition, sep, anchor = key.rpartition(SEP)
    return (partition, anchor) if sep and partition and anchor else None


def schedule_of_key(key: str) -> tuple[str, str, str | None] | None:
    """(schedule, tick ISO, partition or None) of a scheduled instance key; None for any other key."""
    partition, sep, anchor = key.rpartition(SEP)
    name, tick, at = anchor.partition(TICK)
    return (name, at, partition or None) if sep and tick and name and at else None


def assign(runs: Iterable[RunFacts], family_of: Callable[[str | None], str | None] = lambda job: None
           ) -> dict[str, str]:
    """run id -> instance key for `runs` (all runs of the partitions involved, shadow runs left out).

    `family_of(job)` identifies the job's partitions definition (None when unknown).
    """
    keys: dict[str, str] = {}
    open_: dict[tuple, tuple[str, set]] = {}          # (family, partition, backfill) -> (key, jobs)
    for run in sorted(runs, key=lambda r: (r.created, r.run_id)):
        explicit = explicit_key(run.tags)
        parent = run.tags.get(PARENT_RUN_TAG)
        if explicit:
            keys[run.run_id] = explicit
        elif parent and parent in keys:
            keys[run.run_id] = keys[parent]
        elif run.partition is None:
            anchor = schedule_anchor(run.tags)
            keys[run.run_id] = run.tags.get(ROOT_RUN_TAG) or (f"{SEP}{anchor}" if anchor else run.run_id)
        else:
            group = (family_of(run.job_name), run.partition, run.tags.get(BACKFILL_TAG, ""))
            current = open_.get(group)
            if current is None or run.job_name in current[1]:
                anchor = schedule_anchor(run.tags) or run.run_id
                current = open_[group] = (f"{run.partition}{SEP}{anchor}", set())
            current[1].add(run.job_name)
            keys[run.run_id] = current[0]
    return keys
