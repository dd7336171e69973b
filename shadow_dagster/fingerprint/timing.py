"""Per-step durations, start-to-start intervals, time-to-completion and resource counts.

Each distribution keeps n, mean and 101 quantiles (0, 1, ..., 100 %), enough for p50/p95 and for
the conditional expectation used by ETAs: E[X - e | X > e], the time still to wait for something
that usually takes X when e seconds have already passed.

- duration[a]: end - start of step a, when the end is known (CSV logs have no ends).
- interval[a]: from the start of a to the start of the next step of the same instance (to the
  instance's end for its last step); pair[(a, b)] is the same restricted to a followed by b
  (kept when seen at least MIN_PAIR times).
- remaining[a]: from the start of a to the end of its instance; total: whole instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from ..cases import Case
from .symbols import END

GRID = np.linspace(0.0, 1.0, 101)
MIN_PAIR = 5


@dataclass
class Dist:
    """Empirical distribution summarised by count, mean and 101 quantiles (seconds)."""

    n: int
    mean: float
    quantiles: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray) -> Dist:
        values = np.asarray(values, dtype=np.float64)
        return cls(len(values), float(values.mean()), np.quantile(values, GRID))

    @property
    def p50(self) -> float:
        return float(self.quantiles[50])

    @property
    def p95(self) -> float:
        return float(self.quantiles[95])

    def expected_remaining(self, elapsed: float | None = None) -> float:
        """E[X - e | X > e] from the quantiles; 0 once e exceeds every observed value."""
        e = max(0.0, float(elapsed or 0.0))
        if e <= 0.0:
            return self.mean
        above = self.quantiles[self.quantiles > e]
        return float((above - e).mean()) if len(above) else 0.0

    def remaining_quantile(self, elapsed: float | None, q: float) -> float:
        """The `q`-quantile of X - e given X > e (how soon it may end); 0 once e exceeds every observed value."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must lie in [0, 1], got {q!r}")
        e = max(0.0, float(elapsed or 0.0))
        above = self.quantiles[self.quantiles > e] if e > 0 else self.quantiles
        return float(np.quantile(above - e, q)) if len(above) else 0.0

    def summary(self) -> dict:
        return {"n": self.n, "mean": round(self.mean, 3), "p50": round(self.p50, 3),
                "p95": round(self.p95, 3)}


def _frame(cases: Sequence[Case]) -> pd.DataFrame:
    """One row per event: activity, next activity, duration, interval, remaining, resource."""
    import pandas as pd   # imported here: loading a fingerprint and predicting need no pandas
    acts, starts, ends, res, sizes = [], [], [], [], []
    for c in cases:
        for e in c.events:
            acts.append(e.activity)
            starts.append(e.start)
            ends.append(np.nan if e.end is None else e.end)
            res.append(e.resource)
        sizes.append(len(c.events))
    sizes_arr = np.array([n for n in sizes if n], dtype=np.int64)
    if not len(sizes_arr):
        return pd.DataFrame(columns=["case", "activity", "start", "duration", "interval", "next",
                                     "remaining", "resource"])
    start = np.array(starts, dtype=np.float64)
    end = np.array(ends, dtype=np.float64)
    case = np.repeat(np.arange(len(sizes_arr)), sizes_arr)
    first = np.concatenate(([0], np.cumsum(sizes_arr)[:-1]))
    last = np.zeros(len(start), dtype=bool)
    last[first + sizes_arr - 1] = True
    case_end = np.maximum.reduceat(np.where(np.isnan(end), start, end), first)[case]
    act = np.array(acts, dtype=object)
    nxt = np.roll(act, -1)
    nxt[last] = END
    interval = np.where(last, case_end - start, np.roll(start, -1) - start)
    return pd.DataFrame({"case": case, "activity": act, "start": start, "duration": end - start,
                         "interval": interval, "next": nxt, "remaining": case_end - start,
                         "resource": res})


class Timing:
    """Duration, interval and remaining-time distributions per step, plus resource counts."""

    def __init__(self, duration: dict[str, Dist], interval: dict[str, Dist],
                 pair: dict[tuple[str, str], Dist], remaining: dict[str, Dist],
                 total: Dist | None, resources: dict[str, dict[str, int]]):
        self.duration, self.interval, self.pair = duration, interval, pair
        self.remaining, self.total, self.resources = remaining, total, resources

    @classmethod
    def from_cases(cls, cases: Sequence[Case]) -> Timing:
        df = _frame(cases)
        if df.empty:
            return cls({}, {}, {}, {}, None, {})
        dur = df.dropna(subset=["duration"])
        duration = {a: Dist.of(g.to_numpy()) for a, g in dur.groupby("activity")["duration"]}
        interval = {a: Dist.of(g.to_numpy()) for a, g in df.groupby("activity")["interval"]}
        remaining = {a: Dist.of(g.to_numpy()) for a, g in df.groupby("activity")["remaining"]}
        pair = {(a, b): Dist.of(g.to_numpy())
                for (a, b), g in df.groupby(["activity", "next"])["interval"]
                if len(g) >= MIN_PAIR}
        total = Dist.of(df.groupby("case")["remaining"].first().to_numpy())   # whole instance
        res = df.dropna(subset=["resource"])
        resources: dict[str, dict[str, int]] = {}
        for (a, r), n in res.groupby(["activity", "resource"]).size().items():
            resources.setdefault(str(a), {})[str(r)] = int(n)
        return cls(duration, interval, pair, remaining, total, resources)

    def eta(self, last: str | None, nxt: str, elapsed: float | None = None) -> float | None:
        """Expected seconds until `nxt` starts, `elapsed` seconds after `last` started."""
        if last is None:
            return 0.0
        dist = self._until(last, nxt)
        return None if dist is None else dist.expected_remaining(elapsed)

    def early_eta(self, last: str | None, nxt: str, elapsed: float | None = None, q: float = 0.1) -> float | None:
        """Seconds until `nxt` starts in the `q` share of past instances where it came soonest (the
        `q`-quantile of the time left), `elapsed` seconds after `last` started."""
        if last is None:
            return 0.0
        dist = self._until(last, nxt)
        return None if dist is None else dist.remaining_quantile(elapsed, q)

    def _until(self, last: str, nxt: str) -> Dist | None:
        """Seconds from `last` starting to `nxt` starting: the pair's own, else any step after `last`."""
        return self.pair.get((last, nxt)) or self.interval.get(last)

    def expected_remaining(self, last: str | None, elapsed: float | None = None) -> float | None:
        """Expected seconds until the instance ends (from its start when nothing ran yet)."""
        dist = self.total if last is None else self.remaining.get(last)
        return None if dist is None else dist.expected_remaining(elapsed)

    def summary(self) -> dict:
        acts = sorted(set(self.interval) | set(self.duration))
        return {
            "steps": {a: {"duration": self.duration[a].summary() if a in self.duration else None,
                          "interval": self.interval[a].summary() if a in self.interval else None,
                          "resources": self.resources.get(a, {})} for a in acts},
            "instance_duration": self.total.summary() if self.total else None,
        }

    # ---------------------------------------------------------- serialisation
    def state(self, prefix: str) -> tuple[dict, dict[str, np.ndarray]]:
        groups = {"duration": list(self.duration.items()), "interval": list(self.interval.items()),
                  "pair": [(list(k), v) for k, v in self.pair.items()],
                  "remaining": list(self.remaining.items()),
                  "total": [("*", self.total)] if self.total else []}
        meta = {"keys": {g: [k for k, _ in items] for g, items in groups.items()},
                "resources": self.resources}
        arrays = {}
        for g, items in groups.items():
            arrays[f"{prefix}{g}_n"] = np.array([d.n for _, d in items], dtype=np.int64)
            arrays[f"{prefix}{g}_mean"] = np.array([d.mean for _, d in items], dtype=np.float64)
            arrays[f"{prefix}{g}_q"] = (np.stack([d.quantiles for _, d in items]) if items
                                        else np.empty((0, len(GRID))))
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays, prefix: str) -> Timing:
        out = {}
        for g, keys in meta["keys"].items():
            n, mean, q = (arrays[f"{prefix}{g}_n"], arrays[f"{prefix}{g}_mean"],
                          arrays[f"{prefix}{g}_q"])
            if not (len(n) == len(mean) == len(q) == len(keys)) or q.shape[1:] != GRID.shape:
                raise ValueError(f"timing group {g!r}: arrays do not match its {len(keys)} keys")
            out[g] = {(tuple(k) if isinstance(k, list) else k): Dist(int(a), float(b), np.asarray(c))
                      for k, a, b, c in zip(keys, n, mean, q)}
        return cls(out["duration"], out["interval"], out["pair"], out["remaining"],
                   out["total"].get("*"), {a: {r: int(c) for r, c in rs.items()}
                                           for a, rs in meta["resources"].items()})
