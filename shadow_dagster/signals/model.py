"""Signal rows (one per transition or observation) and the signals assembled from them.

A *signal* is the on/off state of a run or a step. Every change of state is one row in the
signal store; the signal's timestamp array (TSA) is the ordered list of those rows' times,
quantised to the configured resolution. Rows that quantise to the same tick keep their order
through the event log's storage id, so no transition is ever dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

MIN_RESOLUTION_MS = 1
MAX_RESOLUTION_MS = 60_000


class Transition(str, Enum):
    """What a signal row records. The first six change the state; the rest observe."""

    START = "start"          # 0 -> 1
    RESTART = "restart"      # 0 -> 1 (retry attempt)
    SUCCESS = "success"      # 1 -> 0
    FAILURE = "failure"      # 1 -> 0
    RETRY = "retry"          # 1 -> 0 (up for retry)
    SKIPPED = "skipped"      # 0 -> 0, a step that never ran
    CANCELED = "canceled"    # 1 -> 0
    INTENSITY = "intensity"  # reported intensity, state unchanged
    OUTPUT = "output"        # an output emitted (size when reported), state unchanged
    BYTES = "bytes"          # bytes an IO manager reported writing, state unchanged
    OUTCOME = "outcome"      # a speculation outcome (hit, miss, saved/wasted seconds)


STATE_AFTER = {
    Transition.START: 1,
    Transition.RESTART: 1,
    Transition.SUCCESS: 0,
    Transition.FAILURE: 0,
    Transition.RETRY: 0,
    Transition.SKIPPED: 0,
    Transition.CANCELED: 0,
}
ENDINGS = {Transition.SUCCESS, Transition.FAILURE, Transition.SKIPPED, Transition.CANCELED}


class SignalRow(NamedTuple):
    """One row of the signal store, exactly as written (a tuple: cheap to build in bulk)."""

    event_id: int            # the event log's storage id: the exactly-once key
    ts_ms: int               # quantised epoch milliseconds
    kind: str                # "run" | "step" | "outcome"
    run_id: str
    job_name: str | None
    step_key: str | None
    partition_key: str | None
    workflow_key: str | None
    transition: str
    state: int
    intensity: float | None
    duration_ms: int | None
    output_bytes: int | None
    tags: str | None         # JSON of the run tags, on run-start rows only


def validate_resolution_ms(resolution_ms: int) -> int:
    """Return `resolution_ms` if it lies in [1 ms, 60 s], else raise ValueError saying so."""
    if isinstance(resolution_ms, bool) or not isinstance(resolution_ms, int):
        raise ValueError(f"TSA resolution must be an integer number of milliseconds, got {resolution_ms!r}")
    if not MIN_RESOLUTION_MS <= resolution_ms <= MAX_RESOLUTION_MS:
        raise ValueError(
            f"TSA resolution {resolution_ms} ms is out of range: choose between "
            f"{MIN_RESOLUTION_MS} ms and {MAX_RESOLUTION_MS} ms (60 s)"
        )
    return resolution_ms


def quantise_ms(timestamp_s: float, resolution_ms: int) -> int:
    """Epoch seconds -> epoch milliseconds floored to a multiple of `resolution_ms`."""
    ms = int(math.floor(timestamp_s * 1000.0))
    return ms - (ms % resolution_ms)


def validate_intensity(value) -> float:
    """Return `value` as a float in [0, 1]; raise ValueError for NaN, infinities or out of range."""
    if isinstance(value, bool):
        raise ValueError(f"intensity must be a number in [0, 1], got the boolean {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"intensity must be a number in [0, 1], got {value!r}") from None
    if math.isnan(x) or not 0.0 <= x <= 1.0:
        raise ValueError(f"intensity must be a number in [0, 1], got {value!r}")
    return x


@dataclass
class Signal:
    """A run's or a step's signal assembled from its rows, in storage order."""

    kind: str
    run_id: str
    step_key: str | None
    job_name: str | None = None
    partition_key: str | None = None
    workflow_key: str | None = None
    tsa: list[int] = field(default_factory=list)          # every state transition, ms
    transitions: list[str] = field(default_factory=list)  # the transition at each TSA entry
    state: int = 0
    intensity: float | None = None
    duration_ms: int | None = None
    output_bytes: int | None = None
    outputs: int = 0
    tags: dict | None = None
    reported_intensity: bool = False

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.run_id, self.step_key)

    @property
    def status(self) -> str:
        """The last transition that changed state ("running" while on)."""
        return "running" if self.state == 1 else (self.transitions[-1] if self.transitions else "unknown")

    @property
    def start_ms(self) -> int | None:
        starts = [t for t, k in zip(self.tsa, self.transitions) if k in ("start", "restart")]
        return starts[0] if starts else None

    @property
    def end_ms(self) -> int | None:
        return self.tsa[-1] if self.tsa and self.state == 0 else None

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "run_id": self.run_id,
            "job_name": self.job_name,
            "step_key": self.step_key,
            "partition_key": self.partition_key,
            "workflow_key": self.workflow_key,
            "state": self.state,
            "status": self.status,
            "tsa": list(self.tsa),
            "transitions": list(self.transitions),
            "intensity": self.intensity,
            "duration_ms": self.duration_ms,
            "output_bytes": self.output_bytes,
            "outputs": self.outputs,
            "tags": self.tags,
        }
