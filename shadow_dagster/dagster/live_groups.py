"""Live workflow instances as the speculative sensor sees them: which are live, their runs and steps so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from shadow_dagster.dagster.instances import instance_keys, members, no_family
from shadow_dagster.tags import PARTITION_TAG, WORKFLOW_TAG, is_own_run

IN_FLIGHT = {DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
             DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING}


@dataclass
class GroupView:
    """What a live workflow instance has done so far (runs sharing a workflow key; shadow, refit and
    report runs excluded)."""

    workflow_key: str
    records: list = field(default_factory=list)          # RunRecords, oldest first
    steps: list[tuple[float, str, str | None, str]] = field(default_factory=list)  # (start, activity, status, run)
    planned: str | None = None    # the workflow of an instance not started yet (a scheduled run)

    @property
    def workflow(self) -> str:
        return self.records[0].dagster_run.job_name if self.records else (self.planned or "")

    @property
    def executed(self) -> list[tuple[float, str, str | None, str]]:
        """Steps that ran (skipped ones left out), as fingerprints are fitted (`executed_only`)."""
        return [s for s in self.steps if s[2] != "SKIPPED"]

    @property
    def prefix(self) -> list[str]:
        """The executed activities in start order: the sequence the fingerprint predicts from."""
        return [a for _, a, _, _ in self.executed]

    @property
    def in_progress(self) -> bool:
        return any(r.dagster_run.status in IN_FLIGHT for r in self.records)

    @property
    def failed(self) -> str | None:
        for r in self.records:
            if r.dagster_run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
                return f"live run {r.dagster_run.run_id} {r.dagster_run.status.value.lower()}"
        return None

    @property
    def ended_at(self) -> float | None:
        if self.in_progress or not self.records:
            return None
        return max((r.end_time or r.update_timestamp.timestamp()) for r in self.records)

    def step_status(self, activity: str) -> str | None:
        found = [s for _, a, s, _ in self.steps if a == activity]
        return found[-1] if found else None


def group_runs(instance: DagsterInstance, workflow_key: str, seed_records=(), family_of=None) -> list:
    """RunRecords of a workflow instance (oldest first), shadow, refit and report runs excluded."""
    records = [r for r in members(instance, workflow_key, family_of or no_family, seed_records)
               if not is_own_run(r.dagster_run.tags)]
    return sorted(records, key=lambda r: (r.start_time or r.create_timestamp.timestamp()))


def group_view(instance: DagsterInstance, workflow_key: str, seed_records=(), family_of=None) -> GroupView:
    """The live instance's runs and steps in start order, labelled like the signal cases."""
    from shadow_dagster.signals.cases import activity_label

    view = GroupView(workflow_key, group_runs(instance, workflow_key, seed_records, family_of))
    for rec in view.records:
        run = rec.dagster_run
        for st in instance.get_run_step_stats(run.run_id):
            start = st.start_time if st.start_time is not None else st.end_time
            if start is None:
                continue
            view.steps.append((start, activity_label(run.job_name, st.step_key),
                               st.status.value if st.status else None, run.run_id))
    view.steps.sort(key=lambda s: s[0])
    return view


class LiveViews:
    """The GroupView of each workflow key, read at most once per tick and shared by settling,
    preparing and planning, so that they all judge the same snapshot of the live runs."""

    def __init__(self, instance: DagsterInstance, family_of=None):
        self.instance, self.family_of, self._views = instance, family_of, {}

    def get(self, key: str, seed=()) -> GroupView:
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = group_view(self.instance, key, seed, self.family_of)
        return view


def live_groups(instance, now: float, chain_gap_s: float, family_of=no_family) -> dict[str, list]:
    """workflow key -> RunRecords that make the instance live (in flight, or a chain just finished)."""
    groups: dict[str, list] = {}
    recs = list(instance.get_run_records(filters=RunsFilter(statuses=list(IN_FLIGHT - {DagsterRunStatus.CANCELING}))))
    if chain_gap_s > 0:
        after = datetime.fromtimestamp(now - chain_gap_s, tz=timezone.utc)
        recs += [r for r in instance.get_run_records(filters=RunsFilter(
            statuses=[DagsterRunStatus.SUCCESS], updated_after=after))
            if WORKFLOW_TAG in r.dagster_run.tags or PARTITION_TAG in r.dagster_run.tags]
    recs = [r for r in recs if not is_own_run(r.dagster_run.tags)]   # shadow, refit, report
    keys = instance_keys(instance, recs, family_of)
    for rec in recs:
        groups.setdefault(keys.get(rec.dagster_run.run_id, rec.dagster_run.run_id), []).append(rec)
    return groups
