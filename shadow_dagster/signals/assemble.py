"""Assemble stored signal rows into per-run and per-step signals (pure Python)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from shadow_dagster.signals.model import ENDINGS, STATE_AFTER, Signal, SignalRow, Transition

_STATE_CHANGES = {t.value: s for t, s in STATE_AFTER.items()}
_ENDINGS = {t.value for t in ENDINGS}


def assemble(rows: Iterable[SignalRow]) -> list[Signal]:
    """Fold rows (ordered by time, then storage id) into signals, one per run and per step.

    Steps still on when their run ended failed or cancelled are closed with a `canceled`
    transition at the run's end. Intensity, where no step reported one, is derived: 1.0 after
    success, otherwise the outputs emitted so far over the most outputs that step has emitted
    in the rows given (0.0 when unknown). A run's intensity is the mean of its steps'.
    """
    signals: dict[tuple[str, str | None], Signal] = {}
    for row in rows:
        key = (row.run_id, row.step_key)
        sig = signals.get(key)
        if sig is None:
            sig = signals[key] = Signal(kind=row.kind, run_id=row.run_id, step_key=row.step_key)
        sig.job_name = row.job_name or sig.job_name
        sig.partition_key = row.partition_key or sig.partition_key
        sig.workflow_key = row.workflow_key or sig.workflow_key
        transition = row.transition
        if transition in _STATE_CHANGES:
            sig.tsa.append(row.ts_ms)
            sig.transitions.append(transition)
            sig.state = _STATE_CHANGES[transition]
        elif transition == Transition.INTENSITY.value and row.intensity is not None:
            sig.intensity = row.intensity
            sig.reported_intensity = True
        elif transition == Transition.OUTPUT.value:
            sig.outputs += 1
            if row.output_bytes is not None:
                sig.output_bytes = (sig.output_bytes or 0) + row.output_bytes
        elif transition == Transition.BYTES.value and row.output_bytes is not None:
            sig.output_bytes = (sig.output_bytes or 0) + row.output_bytes
        if row.duration_ms is not None:
            sig.duration_ms = row.duration_ms
        if row.tags:
            sig.tags = json.loads(row.tags)
    _close_orphans(signals)
    _derive(signals.values())
    return list(signals.values())


def _close_orphans(signals: dict[tuple[str, str | None], Signal]) -> None:
    for sig in signals.values():
        if sig.step_key is None or sig.state != 1:
            continue
        run = signals.get((sig.run_id, None))
        if run and run.state == 0 and run.transitions and run.transitions[-1] in ("failure", "canceled"):
            sig.tsa.append(max(run.tsa[-1], sig.tsa[-1]))
            sig.transitions.append(Transition.CANCELED.value)
            sig.state = 0


def _derive(signals: Iterable[Signal]) -> None:
    signals = list(signals)
    most_outputs: dict[tuple[str | None, str | None], int] = {}
    for sig in signals:
        k = (sig.job_name, sig.step_key)
        most_outputs[k] = max(most_outputs.get(k, 0), sig.outputs)
    steps_by_run: dict[str, list[Signal]] = {}
    for sig in signals:
        if sig.duration_ms is None and sig.state == 0 and sig.start_ms is not None and sig.transitions[-1] in _ENDINGS:
            sig.duration_ms = sig.tsa[-1] - sig.start_ms
        if sig.step_key is None:
            continue
        steps_by_run.setdefault(sig.run_id, []).append(sig)
        if sig.reported_intensity and sig.transitions[-1:] != ["success"]:
            continue
        if sig.transitions and sig.transitions[-1] == "success":
            sig.intensity = 1.0
        else:
            expected = most_outputs.get((sig.job_name, sig.step_key), 0)
            sig.intensity = min(1.0, sig.outputs / expected) if expected else 0.0
    for sig in signals:
        if sig.step_key is None:
            steps = steps_by_run.get(sig.run_id, [])
            if steps:
                sig.intensity = sum(s.intensity or 0.0 for s in steps) / len(steps)
            elif sig.transitions[-1:] == ["success"]:
                sig.intensity = 1.0
