"""Generated workflow histories with hidden regimes, for tests, benchmarks and demos.

A workflow of `n_steps` positions runs once per `interval` seconds. Every `branch_every`-th
position is a branch point with `n_alternatives` alternative steps; the position before it is an
optional step. Each instance runs in one regime (weekday, weekend or backfill): the regime sets
which alternative is preferred at every branch point (with probability `bias`), how often optional
steps are skipped, and how fast steps run. Weekday/weekend follow the UTC calendar of the
instance's start; a `backfill_share` of instances are backfills. With `observable=True` the case
attributes carry `weekday` and `backfill` (run metadata a scheduler knows); with False the regime
is hidden and must be inferred from the steps themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from shadow_dagster.cases import Case, Event

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Regime:
    name: str
    bias: float      # probability of the regime's preferred alternative at a branch point
    skip: float      # probability of skipping an optional step
    speed: float     # duration multiplier


REGIMES = (Regime("weekday", 0.85, 0.05, 1.0), Regime("weekend", 0.85, 0.35, 1.6),
           Regime("backfill", 0.85, 0.9, 0.4))


def regime_history(n_cases: int, *, n_steps: int = 30, branch_every: int = 3,
                   n_alternatives: int = 3, seed: int = 0, start: float = 1_700_000_000.0,
                   interval: float = 3600.0, backfill_share: float = 0.1,
                   observable: bool = True, workflow: str = "synthetic") -> list[Case]:
    """`n_cases` instances, oldest first, reproducible from `seed`."""
    if n_cases < 0 or n_steps < 1 or branch_every < 2 or n_alternatives < 2:
        raise ValueError("need n_cases >= 0, n_steps >= 1, branch_every >= 2, n_alternatives >= 2")
    if not 0 <= backfill_share <= 1:
        raise ValueError(f"backfill_share must be in [0, 1], got {backfill_share}")
    rng = np.random.default_rng(seed)
    base = rng.uniform(5.0, 120.0, size=(n_steps, n_alternatives))
    letters = "abcdefghijklmnopqrstuvwxyz"
    branch = [p % branch_every == branch_every - 1 for p in range(n_steps)]
    optional = [p + 1 < n_steps and branch[p + 1] and p > 0 for p in range(n_steps)]
    names = [[f"s{p:02d}{letters[a]}" for a in range(n_alternatives)] if branch[p]
             else [f"s{p:02d}"] for p in range(n_steps)]
    cases = []
    for i in range(n_cases):
        t0 = start + i * interval + float(rng.uniform(0, 60))
        day = time.gmtime(t0).tm_wday
        backfill = bool(rng.random() < backfill_share)
        r = 2 if backfill else (1 if day >= 5 else 0)
        regime = REGIMES[r]
        u = rng.random(n_steps)
        pick = rng.integers(1, n_alternatives, size=n_steps)
        noise = rng.lognormal(0.0, 0.2, size=n_steps)
        gaps = rng.uniform(1.0, 5.0, size=n_steps)
        events, t = [], t0
        for p in range(n_steps):
            if optional[p] and u[p] < regime.skip:
                continue
            alt = 0
            if branch[p]:
                preferred = (r + p // branch_every) % n_alternatives
                alt = preferred if u[p] < regime.bias else (preferred + pick[p]) % n_alternatives
            duration = float(base[p, alt] * regime.speed * noise[p])
            events.append(Event(activity=names[p][alt], start=t, end=t + duration,
                                resource=f"pool-{p % 3}", job=workflow, run_id=f"{workflow}-{i}"))
            t += duration + float(gaps[p])
        attrs = ({"weekday": DAYS[day], "backfill": str(backfill).lower()} if observable else {})
        cases.append(Case(case_id=f"{workflow}-{i}", workflow=workflow, events=events,
                          attrs=attrs))
    return cases
