"""Workflow instance keys of Dagster runs (the rules are in `signals.instances`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from dagster import DagsterInstance, RunsFilter

from shadow_dagster.signals.instances import (
    ROOT_RUN_TAG,
    SCHEDULE_TAG,
    SCHEDULED_AT_TAG,
    RunFacts,
    assign,
    explicit_key,
    partition_of_key,
    schedule_of_key,
)
from shadow_dagster.tags import PARTITION_TAG, WORKFLOW_TAG, is_own_run

Family = Callable[[str | None], str | None]


def no_family(job_name: str | None) -> str | None:
    return None


def partitions_family(partitions_def) -> str | None:
    """A stable id of a partitions definition (None for an unpartitioned job)."""
    if partitions_def is None:
        return None
    name = getattr(partitions_def, "name", None)
    ident = name if type(partitions_def).__name__ == "DynamicPartitionsDefinition" and name else repr(partitions_def)
    return f"{type(partitions_def).__name__}:{hashlib.sha1(ident.encode()).hexdigest()[:12]}"


def family_resolver(repository_def) -> Family:
    """job name -> partitions family of that job in `repository_def` (None for jobs it lacks)."""
    if repository_def is None:
        return no_family
    cache: dict[str | None, str | None] = {}

    def family_of(job_name: str | None) -> str | None:
        if job_name not in cache:
            try:
                job = repository_def.get_job(job_name) if job_name else None
            except Exception:  # noqa: BLE001 - a job of another code location: unknown family
                job = None
            cache[job_name] = partitions_family(getattr(job, "partitions_def", None))
        return cache[job_name]

    return family_of


def _facts(record) -> RunFacts:
    run = record.dagster_run
    return RunFacts(run.run_id, run.job_name, record.create_timestamp.timestamp(), dict(run.tags))


def partition_records(instance: DagsterInstance, partition: str) -> list:
    """Live RunRecords with Dagster's partition tag `partition` (shadow runs never carry it)."""
    return [r for r in instance.get_run_records(filters=RunsFilter(tags={PARTITION_TAG: partition}))
            if not is_own_run(r.dagster_run.tags)]


def keys_of_partition(records: Iterable, family_of: Family = no_family) -> dict[str, str]:
    """run id -> instance key for the RunRecords of one partition."""
    return assign(map(_facts, records), family_of)


def instance_keys(instance: DagsterInstance, records: Iterable, family_of: Family = no_family) -> dict[str, str]:
    """run id -> instance key for `records`, reading the other runs of their partitions once each."""
    out: dict[str, str] = {}
    by_partition: dict[str, list] = {}
    for rec in records:
        run = rec.dagster_run
        partition = run.tags.get(PARTITION_TAG)
        root = run.tags.get(ROOT_RUN_TAG)
        if explicit_key(run.tags) or not partition:
            if root and not explicit_key(run.tags):   # a re-execution: the key of the run it repeats
                found = list(instance.get_run_records(filters=RunsFilter(run_ids=[root])))
                if found:
                    out[run.run_id] = assign([_facts(found[0])])[root]
                    continue
            out.update(assign([_facts(rec)]))
        else:
            by_partition.setdefault(partition, []).append(run.run_id)
    for partition, run_ids in by_partition.items():
        keys = keys_of_partition(partition_records(instance, partition), family_of)
        out.update({rid: keys.get(rid, rid) for rid in run_ids})
    return out


def members(instance: DagsterInstance, key: str, family_of: Family = no_family, seed_records=()) -> list:
    """Live RunRecords of the instance `key`."""
    tagged = list(instance.get_run_records(filters=RunsFilter(tags={WORKFLOW_TAG: key})))
    if tagged:
        return tagged
    parsed = partition_of_key(key)
    if parsed is not None:
        records = partition_records(instance, parsed[0])
        keys = keys_of_partition(records, family_of)
        found = [r for r in records if keys.get(r.dagster_run.run_id) == key]
        if found:
            return found
    scheduled = schedule_of_key(key)
    if scheduled is not None and scheduled[2] is None:     # an unpartitioned scheduled run, re-executions
        name, at, _ = scheduled
        first = [r for r in instance.get_run_records(filters=RunsFilter(tags={SCHEDULE_TAG: name,
                                                                              SCHEDULED_AT_TAG: at}))
                 if not is_own_run(r.dagster_run.tags)]
        again = [r for f in first for r in instance.get_run_records(
            filters=RunsFilter(tags={ROOT_RUN_TAG: f.dagster_run.run_id}))]
        return first + again
    if scheduled is not None:
        return []                                           # not launched yet
    seeds = list(seed_records)
    if seeds:
        keys = instance_keys(instance, seeds, family_of)
        return [r for r in seeds if keys.get(r.dagster_run.run_id) == key] or seeds
    by_id = list(instance.get_run_records(filters=RunsFilter(run_ids=[key])))
    root = list(instance.get_run_records(filters=RunsFilter(tags={ROOT_RUN_TAG: key})))
    return [r for r in by_id + root if not is_own_run(r.dagster_run.tags)]


def upcoming_key(instance: DagsterInstance, job_name: str, partition: str | None, tags: dict, created: float,
                 family_of: Family = no_family) -> str:
    """The instance key a run not launched yet will have (a run a schedule requests, say)."""
    facts = RunFacts("", job_name, created, {**tags, PARTITION_TAG: partition} if partition else dict(tags))
    records = partition_records(instance, partition) if partition and not explicit_key(tags) else []
    return assign([*map(_facts, records), facts], family_of)[""]
