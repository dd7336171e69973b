"""Predictions for a run's workflow instance (the `shadow-dagster predict` command)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from dagster import DagsterInstance, RunsFilter

from shadow_dagster.dagster.instances import instance_keys, no_family
from shadow_dagster.dagster.live_groups import group_view
from shadow_dagster.fingerprint import Prediction
from shadow_dagster.signals.cases import case_attrs


def _now() -> float:
    return time.time()


@dataclass
class RunPrediction:
    """A prediction for a run, with what it was made from."""

    run_id: str
    workflow: str
    workflow_key: str
    prefix: list[str]
    prediction: Prediction
    elapsed_seconds: float | None = None   # since the newest step of the prefix started
    in_progress: bool = False              # a run of the instance is still in flight

    @property
    def overdue(self) -> list[str]:
        """Predicted steps whose ETA is 0 only because the live instance has waited longer since its
        last step started than any past instance took to reach them: the fingerprint's expected
        time left, E[X - e | X > e], has no observation above e. Not "starts now": unknown."""
        if not self.prefix or not self.elapsed_seconds:
            return []
        return [s.activity for s in self.prediction.steps if s.eta_seconds == 0.0]

    @property
    def remaining_unknown(self) -> bool:
        """The instance is still running but slower than every past one: the fingerprint's
        expected remaining duration is 0 for want of an observation, not because it is done."""
        return (self.in_progress and bool(self.prefix) and bool(self.elapsed_seconds)
                and self.prediction.expected_remaining_seconds == 0.0)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "workflow": self.workflow, "workflow_key": self.workflow_key,
                "prefix": self.prefix, "elapsed_seconds": self.elapsed_seconds, "in_progress": self.in_progress,
                "overdue": self.overdue, "remaining_unknown": self.remaining_unknown,
                **self.prediction.to_dict()}


def predict_run(instance: DagsterInstance, run_id: str, *, now: float | None = None,
                family_of=no_family) -> RunPrediction:
    """Predict the next steps of the workflow instance `run_id` belongs to.

    The instance is read exactly as the speculative sensor reads it (`group_view`), so the CLI
    shows the prediction the sensor acts on.
    """
    from shadow_dagster.dagster.fingerprints import load_fingerprint

    record = next(iter(instance.get_run_records(filters=RunsFilter(run_ids=[run_id]))), None)
    if record is None:
        raise ValueError(f"no run {run_id!r} in this Dagster instance")
    run = record.dagster_run
    key = instance_keys(instance, [record], family_of).get(run.run_id, run.run_id)
    view = group_view(instance, key, seed_records=[record], family_of=family_of)
    now = _now() if now is None else now       # the moment the view describes
    workflow = view.workflow if view.records else run.job_name
    elapsed = max(0.0, now - view.executed[-1][0]) if view.executed else None
    in_progress = view.in_progress if view.records else False
    fp = load_fingerprint(workflow)
    if fp is None:
        pred = Prediction(reason=f"no fingerprint for workflow {workflow!r} yet: materialize workflow_fingerprint")
    else:
        first = view.records[0].dagster_run if view.records else run
        attrs = case_attrs(first.tags, view.steps[0][0] if view.steps else now)
        pred = fp.predict(view.prefix, attrs, elapsed)
    return RunPrediction(run_id, workflow, key, view.prefix, pred, elapsed, in_progress)
