"""Runs that running schedules will launch soon: planned for before they exist.

A schedule says when its next run starts and, evaluated at that tick as Dagster's scheduler will
evaluate it (and as the UI's "Test schedule" does), which job and partition it requests. Such a
run is an instance that has not started yet; its key (`signals.instances.scheduled_key`) is the one
the run will have, so a shadow run planned for it settles on the real run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from shadow_dagster.signals.instances import SCHEDULE_TAG, SCHEDULED_AT_TAG, scheduled_key, tick_iso


@dataclass(frozen=True)
class Upcoming:
    """A run a schedule requests at its next tick."""

    schedule: str
    job_name: str
    tick_s: float                      # epoch seconds
    partition: str | None
    tags: dict = field(default_factory=dict)

    @property
    def tick_iso(self) -> str:
        return tick_iso(self.tick_s)

    @property
    def key(self) -> str:
        return scheduled_key(self.schedule, self.tick_iso, self.partition)

    @property
    def run_tags(self) -> dict:
        """The tags Dagster's scheduler gives the run (besides the job's own and the partition's)."""
        return {**self.tags, SCHEDULE_TAG: self.schedule, SCHEDULED_AT_TAG: self.tick_iso}


def running_schedules(instance, repo) -> list:
    """The repository's schedules that are running: started in the instance, or running by default
    and never stopped there."""
    from dagster import DefaultScheduleStatus

    from shadow_dagster.dagster.compat import InstigatorStatus, InstigatorType

    states = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE):
        origin = getattr(state, "origin", None)
        repo_name = getattr(getattr(origin, "repository_origin", None), "repository_name", None)
        if repo_name in (None, repo.name):
            states[state.instigator_name] = state.status
    out = []
    for schedule in repo.schedule_defs:
        status = states.get(schedule.name)
        default_on = schedule.default_status == DefaultScheduleStatus.RUNNING
        if status == InstigatorStatus.RUNNING or (status in (None, InstigatorStatus.DECLARED_IN_CODE) and default_on):
            out.append(schedule)
    return out


def next_tick(schedule, now: float) -> float:
    """Epoch seconds of the schedule's first tick after `now`."""
    from shadow_dagster.dagster.compat import get_next_cron_tick

    crons = [schedule.cron_schedule] if isinstance(schedule.cron_schedule, str) else list(schedule.cron_schedule)
    start = datetime.fromtimestamp(now, tz=timezone.utc)
    return min(get_next_cron_tick(c, start, schedule.execution_timezone).timestamp() for c in crons)


def upcoming_runs(instance, repo, now: float, horizon_s: float, jobs: set[str], notes: list[str]) -> list[Upcoming]:
    """Runs that running schedules of `jobs` request at a tick within `horizon_s` of `now`.

    Evaluated afresh on every call, as the answer for a tick may depend on what the instance holds
    by then. A schedule that fails to evaluate adds a note and is left out: it never stops the tick."""
    from dagster import build_schedule_context

    out = []
    for schedule in running_schedules(instance, repo):
        job = getattr(schedule, "job_name", None)
        if job not in jobs:
            continue
        tick = next_tick(schedule, now)
        if tick - now > horizon_s:
            continue
        try:
            context = build_schedule_context(instance=instance, repository_def=repo,
                                             scheduled_execution_time=datetime.fromtimestamp(tick, tz=timezone.utc))
            data = schedule.evaluate_tick(context)
        except Exception as exc:  # noqa: BLE001 - user code: one failing schedule must not stop the tick
            notes.append(f"schedule {schedule.name}: evaluating its next tick failed: {exc}")
            continue
        for request in data.run_requests or ():
            target = request.job_name or job
            if target in jobs:
                out.append(Upcoming(schedule.name, target, tick, request.partition_key, dict(request.tags or {})))
    return out
