"""Live workflow instances read from the Dagster instance, encoded as the fingerprint expects."""

from __future__ import annotations

import time
from dataclasses import dataclass

from dagster import DagsterInstance, RunsFilter

from shadow_dagster.cases import Case, Event
from shadow_dagster.dagster.events import run_info_from_tags
from shadow_dagster.fingerprint import Prediction
from shadow_dagster.signals.cases import activity_label, case_attrs
from shadow_dagster.tags import WORKFLOW_TAG, is_shadow_run

_STATUS = {"SUCCESS": "success", "FAILURE": "failure", "SKIPPED": "skipped", "IN_PROGRESS": "running"}


def workflow_runs(instance: DagsterInstance, run) -> list:
    """The live (non-shadow) runs sharing `run`'s workflow key, ordered by creation."""
    key = run_info_from_tags(run.run_id, run.job_name, run.tags).workflow_key
    if run.tags.get(WORKFLOW_TAG):
        flt = RunsFilter(tags={WORKFLOW_TAG: key})
    elif run.tags.get("dagster/partition"):
        flt = RunsFilter(tags={"dagster/partition": key})
    else:
        flt = RunsFilter(run_ids=[run.run_id])
    records = sorted(instance.get_run_records(filters=flt), key=lambda r: (r.create_timestamp, r.dagster_run.run_id))
    return [r.dagster_run for r in records if not is_shadow_run(r.dagster_run.tags)]


def live_case(instance: DagsterInstance, run) -> Case:
    """The workflow instance `run` belongs to, with one event per step from the run step stats."""
    runs = workflow_runs(instance, run) or [run]
    events: list[Event] = []
    for r in runs:
        for stat in instance.get_run_step_stats(r.run_id):
            if stat.start_time is None:
                continue
            status = _STATUS.get(stat.status.value if stat.status else "IN_PROGRESS", "running")
            events.append(Event(activity_label(r.job_name, stat.step_key), stat.start_time, stat.end_time,
                                status, job=r.job_name, run_id=r.run_id))
    events.sort(key=lambda e: e.start)
    first = runs[0]
    start = events[0].start if events else time.time()
    key = run_info_from_tags(run.run_id, run.job_name, run.tags).workflow_key
    return Case(case_id=key, workflow=first.job_name, events=events, attrs=case_attrs(first.tags, start))


@dataclass
class RunPrediction:
    """A prediction for a run, with what it was made from."""

    run_id: str
    workflow: str
    workflow_key: str
    prefix: list[str]
    prediction: Prediction

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "workflow": self.workflow, "workflow_key": self.workflow_key,
                "prefix": self.prefix, **self.prediction.to_dict()}


def predict_run(instance: DagsterInstance, run_id: str, *, now: float | None = None) -> RunPrediction:
    """Predict the next steps of the workflow instance `run_id` belongs to."""
    from shadow_dagster.dagster.fingerprints import load_fingerprint

    run = instance.get_run_by_id(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r} in this Dagster instance")
    case = live_case(instance, run)
    prefix = [e.activity for e in case.events if e.status != "skipped"]
    fp = load_fingerprint(case.workflow)
    if fp is None:
        pred = Prediction(reason=f"no fingerprint for workflow {case.workflow!r} yet: materialize workflow_fingerprint")
    else:
        now = time.time() if now is None else now
        last_start = max((e.start for e in case.events if e.status != "skipped"), default=None)
        elapsed = None if last_start is None else max(0.0, now - last_start)
        pred = fp.predict(prefix, case.attrs, elapsed)
    return RunPrediction(run_id, case.workflow, case.case_id, prefix, pred)
