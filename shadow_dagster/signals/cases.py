"""Signals -> workflow instances (Cases), the input of graph, patterns and fingerprint.

Contract shared by the assets and the speculative sensor:
- a case is every run sharing a workflow key (tag `shadow_dagster/workflow`, else the partition
  key, else the run id); its workflow is the job name of its first run;
- an event is one attempt of a step, labelled `activity_label(job, step_key)` = "job/step";
- a case's attributes (`case_attrs`) are observable run metadata the fingerprint conditions on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone

from shadow_dagster.cases import Case, Event
from shadow_dagster.signals.model import Signal
from shadow_dagster.tags import PARTITION_TAG, is_own_run

BACKFILL_TAG = "dagster/backfill"
SCHEDULE_TAG = "dagster/schedule_name"
SENSOR_TAG = "dagster/sensor_name"


def activity_label(job_name: str | None, step_key: str) -> str:
    """The activity a step is known by in graphs and fingerprints: "job/step"."""
    return f"{job_name or '?'}/{step_key}"


def _day(partition_key: str | None, start_s: float) -> date:
    if partition_key:
        try:
            return date.fromisoformat(partition_key[:10])
        except ValueError:
            pass
    return datetime.fromtimestamp(start_s, tz=timezone.utc).date()


def case_attrs(tags: Mapping[str, str] | None, start_s: float) -> dict[str, str]:
    """Run metadata a predictor may condition on: backfill, trigger, day type."""
    tags = tags or {}
    trigger = "schedule" if SCHEDULE_TAG in tags else "sensor" if SENSOR_TAG in tags else "manual"
    day = _day(tags.get(PARTITION_TAG), start_s)
    return {
        "backfill": "yes" if BACKFILL_TAG in tags else "no",
        "trigger": trigger,
        "day": "weekend" if day.weekday() >= 5 else "weekday",
    }


def _attempts(sig: Signal) -> list[Event]:
    """One event per attempt: start/restart opens one, the next ending transition closes it."""
    events: list[Event] = []
    opened: int | None = None
    label = activity_label(sig.job_name, sig.step_key)
    common = dict(job=sig.job_name, run_id=sig.run_id, output_bytes=sig.output_bytes, intensity=sig.intensity)
    for ts, kind in zip(sig.tsa, sig.transitions):
        if kind in ("start", "restart"):
            opened = ts
        elif kind == "skipped":
            events.append(Event(label, ts / 1000, ts / 1000, "skipped", **common))
        elif opened is not None:
            status = "failure" if kind == "retry" else kind
            events.append(Event(label, opened / 1000, ts / 1000, status, **common))
            opened = None
    if opened is not None:
        events.append(Event(label, opened / 1000, None, "running", **common))
    return events


def cases_from_signals(signals: Iterable[Signal], *, executed_only: bool = False) -> list[Case]:
    """Group signals into cases ordered by start; events ordered by start (ties: input order).
    The runs shadow-dagster made itself (shadow, refit and report runs) belong to no case."""
    runs: dict[str, Signal] = {}
    steps: dict[str, list[Signal]] = {}
    seen: dict[str, int] = {}  # first appearance in storage order: breaks ties of quantised starts
    signals = list(signals)
    own = {s.run_id for s in signals if s.step_key is None and is_own_run(s.tags)}
    for sig in signals:
        if sig.run_id in own:
            continue
        seen.setdefault(sig.run_id, len(seen))
        if sig.step_key is None:
            runs[sig.run_id] = sig
        else:
            steps.setdefault(sig.run_id, []).append(sig)
    by_key: dict[str, list[str]] = {}
    for run_id in seen:
        run = runs.get(run_id)
        key = (run.workflow_key if run else None) or next(
            (s.workflow_key for s in steps.get(run_id, []) if s.workflow_key), run_id
        )
        by_key.setdefault(key, []).append(run_id)

    def run_start(run_id: str) -> tuple[float, int]:
        run = runs.get(run_id)
        if run and run.tsa:
            return run.tsa[0], seen[run_id]
        return min((s.tsa[0] for s in steps.get(run_id, []) if s.tsa), default=0), seen[run_id]

    cases = []
    for key, run_ids in by_key.items():
        run_ids.sort(key=run_start)
        events = [e for rid in run_ids for s in steps.get(rid, []) for e in _attempts(s)]
        if executed_only:
            events = [e for e in events if e.status != "skipped"]
        events.sort(key=lambda e: e.start)
        if not events:
            continue
        first = runs.get(run_ids[0])
        job = (first.job_name if first else None) or events[0].job or "?"
        tags = first.tags if first and first.tags else {}
        cases.append(Case(case_id=key, workflow=job, events=events, attrs=case_attrs(tags, events[0].start)))
    cases.sort(key=lambda c: c.start)
    return cases

