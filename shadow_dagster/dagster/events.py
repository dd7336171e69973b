"""Convert Dagster event log entries into signal rows."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from dagster import DagsterEventType

from shadow_dagster.signals.model import SignalRow, Transition, quantise_ms, validate_resolution_ms
from shadow_dagster.tags import INTENSITY_MARKER, OUTPUT_BYTES, PARTITION_TAG, WORKFLOW_TAG

log = logging.getLogger("shadow_dagster.ingest")

SIZE_KEYS = (OUTPUT_BYTES, "size_bytes", "bytes", "num_bytes")

_RUN = {
    DagsterEventType.RUN_START: Transition.START,
    DagsterEventType.RUN_SUCCESS: Transition.SUCCESS,
    DagsterEventType.RUN_FAILURE: Transition.FAILURE,
    DagsterEventType.RUN_CANCELED: Transition.CANCELED,
}
_STEP = {
    DagsterEventType.STEP_START: Transition.START,
    DagsterEventType.STEP_RESTARTED: Transition.RESTART,
    DagsterEventType.STEP_SUCCESS: Transition.SUCCESS,
    DagsterEventType.STEP_FAILURE: Transition.FAILURE,
    DagsterEventType.STEP_SKIPPED: Transition.SKIPPED,
    DagsterEventType.STEP_UP_FOR_RETRY: Transition.RETRY,
    DagsterEventType.STEP_OUTPUT: Transition.OUTPUT,
    DagsterEventType.HANDLED_OUTPUT: Transition.BYTES,
}
_STATE = {Transition.START: 1, Transition.RESTART: 1}


class RunInfo(NamedTuple):
    """What every row of a run carries besides the event itself."""

    job_name: str | None
    partition_key: str | None
    workflow_key: str
    tags_json: str


def run_info_from_tags(run_id: str, job_name: str | None, tags: Mapping[str, str],
                       workflow_key: str | None = None) -> RunInfo:
    """`workflow_key` as decided by `signals.instances` (default: the `shadow_dagster/workflow`
    tag, else the run id, for a run seen alone)."""
    partition = tags.get(PARTITION_TAG)
    workflow = workflow_key or tags.get(WORKFLOW_TAG) or run_id
    return RunInfo(job_name, partition, workflow, json.dumps(dict(tags), sort_keys=True))


@dataclass
class Conversion:
    """The rows made from one page of events, and what was skipped (storage id, reason)."""

    rows: list[SignalRow] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def _size(metadata) -> int | None:
    if not metadata:
        return None
    for key in SIZE_KEYS:
        value = metadata.get(key)
        if value is None:
            continue
        raw = getattr(value, "value", value)
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw >= 0 and math.isfinite(raw):
            return int(raw)
    return None


def parse_intensity_message(message: str) -> float | None:
    """The value of a `report_intensity` log line, None if the line is not one; ValueError if bad."""
    if not message.startswith(INTENSITY_MARKER + "="):
        return None
    from shadow_dagster.signals.model import validate_intensity

    return validate_intensity(message[len(INTENSITY_MARKER) + 1 :].split()[0])


class EventConverter:
    """Turns `{storage_id: EventLogEntry}` pages into signal rows.

    `lookup_runs(run_ids)` returns RunInfo for the runs it knows; infos are cached per run.
    """

    def __init__(self, resolution_ms: int, lookup_runs: Callable[[list[str]], Mapping[str, RunInfo]]):
        self.resolution_ms = validate_resolution_ms(resolution_ms)
        self._lookup_runs = lookup_runs
        self._runs: dict[str, RunInfo] = {}

    def _infos(self, records: Mapping[int, object]) -> None:
        missing = {getattr(e, "run_id", None) for e in records.values()} - self._runs.keys() - {None}
        if not missing:
            return
        if len(self._runs) > 50_000:
            self._runs.clear()
        found = self._lookup_runs(sorted(missing))
        self._runs.update(found)

    def convert(self, records: Mapping[int, object]) -> Conversion:
        self._infos(records)
        out = Conversion()
        rows = out.rows
        res = self.resolution_ms
        for storage_id, entry in records.items():
            try:
                row = self._convert_one(storage_id, entry, res)
            except Exception as exc:  # noqa: BLE001 - one bad event must not stop the page
                out.skipped.append((storage_id, f"{exc.__class__.__name__}: {exc}"))
                continue
            if row is not None:
                rows.append(row)
        for storage_id, reason in out.skipped:
            log.warning("skipped event log record storage_id=%s: %s", storage_id, reason)
        return out

    def _convert_one(self, storage_id: int, entry, res: int) -> SignalRow | None:
        run_id = entry.run_id
        if not run_id:
            # instance-level events (freshness, asset health, wipes) belong to no run: not signals
            etype = entry.dagster_event.event_type if entry.dagster_event is not None else None
            if etype in _RUN or etype in _STEP:
                raise ValueError(f"{etype.name} event has no run id")
            return None
        ts = entry.timestamp
        if not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts <= 0:
            raise ValueError(f"event has an invalid timestamp {ts!r}")
        event = entry.dagster_event
        if event is None:
            message = entry.user_message or ""
            if not message.startswith(INTENSITY_MARKER):
                return None
            value = parse_intensity_message(message)
            if not entry.step_key:
                raise ValueError("intensity report outside a step")
            return self._row(storage_id, ts, res, "step", entry, entry.step_key, Transition.INTENSITY, 1, intensity=value)
        etype = event.event_type
        transition = _RUN.get(etype)
        if transition is not None:
            return self._row(
                storage_id, ts, res, "run", entry, None, transition, _STATE.get(transition, 0),
                tags=transition is Transition.START,
            )
        transition = _STEP.get(etype)
        if transition is None:
            return None
        step_key = entry.step_key or event.step_key
        if not step_key:
            raise ValueError(f"{etype.name} event has no step key")
        if transition is Transition.OUTPUT or transition is Transition.BYTES:
            size = _size(getattr(event.event_specific_data, "metadata", None))
            if transition is Transition.BYTES and size is None:
                return None
            return self._row(storage_id, ts, res, "step", entry, step_key, transition, 1, output_bytes=size)
        duration = None
        if transition is Transition.SUCCESS:
            ms = getattr(event.event_specific_data, "duration_ms", None)
            duration = int(round(ms)) if isinstance(ms, (int, float)) and math.isfinite(ms) else None
        return self._row(
            storage_id, ts, res, "step", entry, step_key, transition, _STATE.get(transition, 0), duration=duration
        )

    def _row(self, storage_id, ts, res, kind, entry, step_key, transition, state, *, intensity=None,
             output_bytes=None, duration=None, tags=False) -> SignalRow:
        info = self._runs.get(entry.run_id)
        if info is None:
            info = self._runs[entry.run_id] = run_info_from_tags(entry.run_id, entry.job_name, {})
        return SignalRow(
            storage_id, quantise_ms(ts, res), kind, entry.run_id, info.job_name or entry.job_name, step_key,
            info.partition_key, info.workflow_key, transition.value, state, intensity, duration,
            output_bytes, info.tags_json if tags else None,
        )
