"""What the speculative sensor decided for each predicted step of a live workflow instance (pure).

One `Decision` per (instance, predicted step) and fingerprint: the step's probability and ETA when
it was last predicted, whether it was pre-executed, and why (or why not) in words. The sensor
stores the latest one per prediction; the `speculation_report` shows them per live instance next
to each launched prediction's outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shadow_dagster.speculation.planner import Candidate, Plan, prediction_id

PRE_EXECUTED = "pre-executed"
NOT_PRE_EXECUTED = "not pre-executed"
# planner reasons that add nothing to what is already recorded for the prediction
_NOTHING_NEW = ("already launched", "already started by the live instance")


@dataclass(frozen=True)
class Decision:
    prediction_id: str
    workflow: str
    workflow_key: str
    activity: str
    probability: float
    eta_s: float | None          # seconds from `ts_ms` until the live run may start the step
    decision: str                # PRE_EXECUTED | NOT_PRE_EXECUTED
    reason: str                  # in words, with the figures compared
    ts_ms: int

    def differs_from(self, before: "Decision | None") -> bool:
        """Another decision or probability (to 0.01) than `before`: news for the report."""
        return before is None or ((self.decision, round(self.probability, 2))
                                  != (before.decision, round(before.probability, 2)))

    def supersedes(self, before: "Decision", refresh_ms: int) -> bool:
        """Whether this decision is worth storing over `before`: another decision or probability at
        once; new figures in the reason or the ETA only after `refresh_ms` (they move every tick)."""
        if self.differs_from(before):
            return True
        if (self.reason, self.eta_s) == (before.reason, before.eta_s):
            return False
        return self.ts_ms - before.ts_ms >= refresh_ms


def _launch_reason(work) -> str:
    steps = "" if len(work.activities) == 1 else f"; with its producers {', '.join(work.activities[1:])}"
    return (f"launched a shadow run: expected saving {work.expected_saving_s:.1f} s for "
            f"{work.expected_cost_s:.1f} s of compute{steps}")


def decisions_of(result: Plan, candidates: Iterable[Candidate], *, workflow: str, workflow_key: str,
                 fingerprint_hash: str, now_ms: int) -> list[Decision]:
    """The decisions a plan holds for the predicted `candidates`, best first; steps the instance
    already started or already launched are left out (their decision stands)."""
    work = {w.activity: w for w in result.work}
    out = []
    for cand in candidates:
        act = cand.activity
        if act in work:
            decision, reason = PRE_EXECUTED, _launch_reason(work[act])
        elif act in result.skipped and not result.skipped[act].startswith(_NOTHING_NEW):
            decision, reason = NOT_PRE_EXECUTED, result.skipped[act]
        else:
            continue
        out.append(Decision(prediction_id(workflow_key, act, fingerprint_hash), workflow, workflow_key, act,
                            float(cand.probability), cand.eta_s, decision, reason, int(now_ms)))
    return out


def changed(decisions: Iterable[Decision], written: Mapping[str, Decision],
            refresh_ms: int = 30_000) -> list[Decision]:
    """The decisions worth storing over the ones last written for their predictions."""
    return [d for d in decisions if d.prediction_id not in written
            or d.supersedes(written[d.prediction_id], refresh_ms)]


def latest_by_instance(decisions: Iterable[Decision], *, instances: int = 10) -> dict[str, list[Decision]]:
    """The `instances` most recently decided workflow keys (newest first), each with its
    decisions, most probable first; of a step decided under several fingerprints (a refit changes
    the prediction id), the newest decision only."""
    newest_per_step: dict[tuple[str, str], Decision] = {}
    for d in decisions:
        held = newest_per_step.get((d.workflow_key, d.activity))
        if held is None or d.ts_ms >= held.ts_ms:
            newest_per_step[(d.workflow_key, d.activity)] = d
    by_key: dict[str, list[Decision]] = {}
    for d in newest_per_step.values():
        by_key.setdefault(d.workflow_key, []).append(d)
    newest = sorted(by_key, key=lambda k: -max(d.ts_ms for d in by_key[k]))[:instances]
    return {k: sorted(by_key[k], key=lambda d: (-d.probability, d.activity)) for k in newest}
