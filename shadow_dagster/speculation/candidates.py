"""What may be pre-executed next: a fingerprint's predictions rolled forward from a prefix (pure).

A live instance is anything with `prefix` (executed activities in start order) and `executed`
((start, activity, status, run) in start order), such as `shadow_dagster.dagster.live_groups.GroupView`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shadow_dagster.speculation.planner import Candidate, expand

if TYPE_CHECKING:
    from shadow_dagster.fingerprint import Fingerprint


def soonest_eta(step) -> float | None:
    """How soon the live run may reach a predicted step: its early ETA (10 % of past instances were
    sooner), else its ETA. Planning with it, not the mean, keeps shadow outputs from landing after
    the live step started, where they are wasted."""
    return step.eta_seconds if step.early_eta_seconds is None else step.early_eta_seconds


def live_candidates(fp: Fingerprint, view, attrs: dict, now: float, horizon: int,
                    min_probability: float) -> list[Candidate]:
    """The next steps of a live instance, `horizon` deep, with probability and soonest ETA."""
    prefix = view.prefix
    executed = view.executed
    last_running = bool(executed) and executed[-1][2] in (None, "IN_PROGRESS")
    elapsed = max(0.0, now - executed[-1][0]) if executed else None

    def predict(path):
        live = list(path) == prefix
        pred = fp.predict(path, attrs, elapsed if live else None)
        if not pred.ok:
            return []
        out = []
        for s in pred.steps:
            eta = soonest_eta(s)
            if live and last_running and s.eta_seconds == 0.0:
                eta = None   # the running step overran every duration seen: its end is unknown
            out.append((s.activity, s.probability, eta))
        return out

    return expand(predict, prefix, horizon=horizon, min_probability=min_probability)


def scheduled_candidates(fp: Fingerprint, prefix: list[str], attrs: dict, lead_s: float, horizon: int,
                         min_probability: float) -> list[Candidate]:
    """The next steps of an instance (`prefix` so far) whose next run a schedule launches in
    `lead_s` seconds: the steps right after the prefix start at the tick at the soonest (ETAs count
    from now); later ones add the fingerprint's soonest ETA."""
    def predict(path):
        pred = fp.predict(path, attrs, None)
        if not pred.ok:
            return []
        at_tick = list(path) == list(prefix)
        return [(s.activity, s.probability, max(0.0, lead_s) if at_tick else soonest_eta(s)) for s in pred.steps]

    return expand(predict, prefix, horizon=horizon, min_probability=min_probability)


__all__ = ["live_candidates", "scheduled_candidates", "soonest_eta"]
