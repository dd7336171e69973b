"""Outcomes of predictions, kept in the signal store (no Dagster import).

Every prediction leaves outcome signals (kind "outcome", one row per stage: "predicted",
"launched", then "hit" or "miss"; pre-fetch and pre-allocation add "prefetch" (one row per tick
that copied inputs) and "warmup", settled once by "used" or "release", see
`shadow_dagster.dagster.prepare`). Rows are keyed by a negative event id hashed from the
prediction id and stage, under the pseudo run id "prediction:<id>" (no workflow key, so they never
join a workflow instance), and a resolved prediction is never written twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from shadow_dagster.signals.model import SignalRow
from shadow_dagster.speculation.policy import Outcome

if TYPE_CHECKING:
    from shadow_dagster.store.signal_store import SignalStore

OUTCOME_RUN_PREFIX = "prediction:"
STAGES = ("predicted", "launched", "hit", "miss", "prefetch", "warmup", "used", "release", "purged")
RESOLVED = ("hit", "miss")
PREPARED = ("prefetch", "warmup")   # pre-fetch / pre-allocation done ahead of a predicted step
SETTLED = ("used", "release")       # ...then the live step used it, or it was released


@dataclass(frozen=True)
class OutcomeRecord:
    """One stage of a prediction, as stored in the signal store."""

    prediction_id: str
    stage: str                     # predicted | launched | hit | miss | purged | (prepare stages)
    ts_ms: int
    workflow: str | None = None
    workflow_key: str | None = None
    activity: str | None = None
    probability: float | None = None
    shadow_run_id: str | None = None
    seconds_saved: float = 0.0
    seconds_wasted: float = 0.0
    reason: str | None = None
    # pre-fetch / pre-allocation stages
    resource: str | None = None          # warmup/release: the resource key
    nbytes: int = 0                      # prefetch: bytes copied into the cache
    seconds: float = 0.0                 # prefetch/warmup/release: seconds spent; purged: run seconds
    position: int | None = None          # index in the live sequence the step was expected at
    prefix_length: int | None = None     # live steps started when it was prepared
    sources: tuple[str, ...] = ()        # prefetch: cache sources (live file paths) copied
    output_lead_s: float | None = None   # miss the live step computed itself: seconds the shadow output
                                         # was ready before the step started (< 0: after; None: no output)

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"outcome stage must be one of {STAGES}, got {self.stage!r}")
        if not self.prediction_id:
            raise ValueError("an outcome needs a prediction id")
        object.__setattr__(self, "sources", tuple(self.sources or ()))

    def dedup_key(self) -> str:
        """One resolution and one settlement per prediction; one prefetch row per tick."""
        if self.stage in RESOLVED:
            return "resolved"
        if self.stage in SETTLED:
            return "settled"
        return f"prefetch@{int(self.ts_ms)}" if self.stage == "prefetch" else self.stage

    def event_id(self) -> int:
        """Negative (never an event log storage id), stable per prediction and stage."""
        digest = hashlib.sha256(f"{self.prediction_id}\x1f{self.dedup_key()}".encode()).hexdigest()
        return -(int(digest[:15], 16) + 1)

    def to_row(self) -> SignalRow:
        if self.stage == "hit":
            seconds = self.seconds_saved
        elif self.stage in PREPARED + SETTLED:
            seconds = self.seconds
        else:
            seconds = self.seconds_wasted
        return SignalRow(self.event_id(), int(self.ts_ms), "outcome", OUTCOME_RUN_PREFIX + self.prediction_id,
                         None, None, None, None, "outcome", 1 if self.stage in ("hit", "used") else 0,
                         self.probability, int(round(seconds * 1000)), self.nbytes or None,
                         json.dumps(asdict(self), sort_keys=True))


def read_outcomes(store: SignalStore, *, since_ms: int | None = None,
                  prediction_ids: Iterable[str] | None = None) -> list[OutcomeRecord]:
    """Outcome records, oldest first."""
    import sqlalchemy as sa

    from shadow_dagster.store import schema

    t = schema.signals
    q = sa.select(t.c.tags).where(t.c.kind == "outcome")
    if since_ms is not None:
        q = q.where(t.c.ts_ms >= since_ms)
    if prediction_ids is not None:
        q = q.where(t.c.run_id.in_([OUTCOME_RUN_PREFIX + p for p in prediction_ids]))
    with store.engine.connect() as conn:
        rows = conn.execute(q.order_by(t.c.ts_ms, t.c.event_id)).scalars().all()
    out = []
    for raw in rows:
        doc = json.loads(raw)
        out.append(OutcomeRecord(**{k: doc[k] for k in OutcomeRecord.__dataclass_fields__ if k in doc}))
    return out


def record_outcomes(store: SignalStore, records: Iterable[OutcomeRecord]) -> int:
    """Write records not already stored (a prediction is resolved at most once); returns how many."""
    records = list(records)
    if not records:
        return 0
    have = {(r.prediction_id, r.dedup_key())
            for r in read_outcomes(store, prediction_ids={r.prediction_id for r in records})}
    new, seen = [], set()
    for r in records:
        key = (r.prediction_id, r.dedup_key())
        if key not in have and key not in seen:
            seen.add(key)
            new.append(r.to_row())
    store.write_batch(new)
    return len(new)


def policy_outcomes(records: Iterable[OutcomeRecord]) -> list[Outcome]:
    """Resolved launches as policy outcomes (hit/miss with the promised probability), oldest first."""
    return [Outcome(r.stage == "hit", float(r.probability or 0.0)) for r in records if r.stage in RESOLVED]
