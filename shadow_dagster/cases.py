"""Workflow instances as plain data: the common input of graph, patterns and fingerprint.

A *case* is one workflow instance (a run, or a chain of runs sharing a workflow key); its events
are the steps it executed, ordered by start time (ties keep input order). The same types describe
Dagster history (built from signals) and any exported event log (CSV), so the pure core never
imports Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """One executed step of a case."""

    activity: str                 # step label, e.g. "train_model" or "daily_etl/extract"
    start: float                  # epoch seconds
    end: float | None = None      # epoch seconds; None while running or unknown
    status: str = "success"       # success | failure | skipped | canceled | running
    resource: str | None = None   # who/what executed it (pool, resource key, CSV resource)
    job: str | None = None        # Dagster job name when known
    run_id: str | None = None
    output_bytes: int | None = None
    intensity: float | None = None

    @property
    def duration(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - self.start)


@dataclass
class Case:
    """One workflow instance: ordered events plus observable run metadata."""

    case_id: str
    workflow: str
    events: list[Event] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)   # e.g. backfill, schedule, weekday

    @property
    def start(self) -> float:
        return min((e.start for e in self.events), default=0.0)

    @property
    def activities(self) -> list[str]:
        return [e.activity for e in self.events]
