"""Predictions for a run's workflow instance (the `shadow-dagster predict` command)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from dagster import DagsterInstance, RunsFilter

from shadow_dagster.dagster.rollback import group_view, workflow_key_of
from shadow_dagster.fingerprint import Prediction
from shadow_dagster.signals.cases import case_attrs


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
    """Predict the next steps of the workflow instance `run_id` belongs to.

    The instance is read exactly as the speculative sensor reads it (`group_view`), so the CLI
    shows the prediction the sensor acts on.
    """
    from shadow_dagster.dagster.fingerprints import load_fingerprint

    record = next(iter(instance.get_run_records(filters=RunsFilter(run_ids=[run_id]))), None)
    if record is None:
        raise ValueError(f"no run {run_id!r} in this Dagster instance")
    run = record.dagster_run
    key = workflow_key_of(run.tags) or run.run_id
    view = group_view(instance, key, seed_records=[record])
    workflow = view.workflow if view.records else run.job_name
    fp = load_fingerprint(workflow)
    if fp is None:
        pred = Prediction(reason=f"no fingerprint for workflow {workflow!r} yet: materialize workflow_fingerprint")
    else:
        now = time.time() if now is None else now
        first = view.records[0].dagster_run if view.records else run
        attrs = case_attrs(first.tags, view.steps[0][0] if view.steps else now)
        elapsed = max(0.0, now - view.executed[-1][0]) if view.executed else None
        pred = fp.predict(view.prefix, attrs, elapsed)
    return RunPrediction(run_id, workflow, key, view.prefix, pred)
