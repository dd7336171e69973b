"""The speculation policy: when is pre-executing a predicted step worth its possible waste?

Rule (pure, no Dagster). A candidate with predicted probability `p`, expected saving `S` seconds
(live compute avoided if the guess is right) and expected cost `C` seconds (shadow compute thrown
away if it is wrong) is launched only if

    p' * S > (1 - p') * C * ratio

where `p' = min(1, c * p)` is the probability corrected by the observed calibration `c`:

    c = (hits + m) / (sum of predicted p over resolved launches + m)

`hits / resolved` is the observed precision and `sum p / resolved` the precision the predictor
promised, so `c` is their ratio, shrunk towards 1 by a prior of `m` pseudo-outcomes
(`prior_strength`) and bounded to [`min_calibration`, `max_calibration`]. With no outcomes `c = 1`;
when launched guesses come true less often than predicted, `c < 1` and the threshold on `p` rises;
when they come true more often it falls. Only the newest `window` resolved outcomes count, so the
policy follows drift. On top of that: `p` must reach `min_probability`, and launches are capped
globally (`max_concurrent` shadow runs in flight) and per workflow instance (`max_per_workflow`),
and per tick (`max_launches_per_tick`): the workflow instances are served in workflow-key order, so
launches are spread over ticks instead of starting run workers together. Its default, "auto", is
one launch per tick where shadow runs start on the live runs' host and no cap where they start
elsewhere; the Dagster glue decides which (`resolve_launch_cap`), and unresolved "auto" counts as 1.

Load guard (off by default): with `max_load_per_core` set, no shadow run is launched while the host's
load per core (the sensor measures the 1-minute load average / usable cores) is above it. Shadow runs
started on a saturated host take CPU from live runs; the load benchmark measured this.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

AUTO = "auto"
LOCAL_LAUNCH_CAP = 1   # bench load: 100 live instances on 2 cores stay within 3 % with one launch per tick


def _positive(name: str, value, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


@dataclass(frozen=True)
class PolicyConfig:
    """Knobs of the policy; see the module docstring for the rule."""

    ratio: float = 1.0             # waste aversion: 2.0 = a wasted second costs twice a saved one
    max_concurrent: int = 4        # shadow runs in flight, all workflows together
    max_per_workflow: int = 2      # shadow runs in flight for one workflow instance
    min_probability: float = 0.05  # never launch below this raw probability
    window: int = 100              # newest resolved outcomes the calibration looks at
    prior_strength: float = 5.0    # pseudo-outcomes pulling the calibration towards 1
    min_calibration: float = 0.25
    max_calibration: float = 2.0
    max_load_per_core: float | None = None  # load guard: no launch while load / cores exceeds this
    deadline_margin: float = 0.25  # a shadow run must fit its step's ETA with this share of its duration to spare
    max_launches_per_tick: int | None | str = AUTO  # spread launches: run workers starting together slow
                                                     # a busy host (None: no cap; "auto": see module doc)

    def __post_init__(self):
        _positive("ratio", self.ratio)
        _count("max_concurrent", self.max_concurrent)
        _count("max_per_workflow", self.max_per_workflow)
        if not 0.0 <= _positive("min_probability", self.min_probability, allow_zero=True) <= 1.0:
            raise ValueError(f"min_probability must lie in [0, 1], got {self.min_probability!r}")
        if _count("window", self.window) < 1:
            raise ValueError("window must be at least 1 outcome")
        _positive("prior_strength", self.prior_strength)
        if not 0 < _positive("min_calibration", self.min_calibration) <= 1 <= _positive(
                "max_calibration", self.max_calibration):
            raise ValueError("calibration bounds must satisfy 0 < min_calibration <= 1 <= max_calibration")
        if self.max_load_per_core is not None:
            _positive("max_load_per_core", self.max_load_per_core)
        _positive("deadline_margin", self.deadline_margin, allow_zero=True)
        cap = self.max_launches_per_tick
        if cap is not None and cap != AUTO and _count("max_launches_per_tick", cap) < 1:
            raise ValueError(f"max_launches_per_tick must be at least 1, None (no cap) or {AUTO!r}, got {cap!r}")

    @property
    def launch_cap(self) -> int | None:
        """Launches allowed per tick (None: no cap); an unresolved "auto" is the cautious 1."""
        return LOCAL_LAUNCH_CAP if self.max_launches_per_tick == AUTO else self.max_launches_per_tick

    def resolve_launch_cap(self, runs_on_live_host: bool) -> PolicyConfig:
        """This config with "auto" made concrete: one launch per tick when shadow runs start on the
        host of the live runs (they compete for its CPU as they start), no cap when they start elsewhere."""
        if self.max_launches_per_tick != AUTO:
            return self
        return replace(self, max_launches_per_tick=LOCAL_LAUNCH_CAP if runs_on_live_host else None)

    def host_saturated(self, load_per_core: float | None) -> bool:
        """True when the load guard is on and the host's load per core is above it. An unknown load
        (no load average on this OS) never blocks."""
        if self.max_load_per_core is None or load_per_core is None:
            return False
        return _positive("load_per_core", load_per_core, allow_zero=True) > self.max_load_per_core


@dataclass(frozen=True)
class Outcome:
    """A resolved launch: was the guess right, and what probability had been predicted."""

    hit: bool
    probability: float

    def __post_init__(self):
        if not 0.0 <= _positive("probability", self.probability, allow_zero=True) <= 1.0:
            raise ValueError(f"probability must lie in [0, 1], got {self.probability!r}")


@dataclass(frozen=True)
class PolicyState:
    """What the policy has learned: the calibration of recent launches (newest last)."""

    config: PolicyConfig = field(default_factory=PolicyConfig)
    hits: int = 0
    misses: int = 0
    promised: float = 0.0   # sum of predicted probabilities over the same outcomes

    @classmethod
    def from_outcomes(cls, outcomes: Iterable[Outcome], config: PolicyConfig | None = None) -> PolicyState:
        """State from resolved outcomes in time order; only the newest `config.window` count."""
        config = config or PolicyConfig()
        recent: Sequence[Outcome] = list(outcomes)[-config.window:]
        for o in recent:
            if not isinstance(o, Outcome):
                raise TypeError(f"outcomes must be Outcome objects, got {type(o).__name__}")
        hits = sum(1 for o in recent if o.hit)
        return cls(config, hits, len(recent) - hits, sum(o.probability for o in recent))

    @property
    def precision(self) -> float | None:
        """hits / (hits + misses) over the window, None before the first outcome."""
        n = self.hits + self.misses
        return self.hits / n if n else None

    @property
    def calibration(self) -> float:
        m = self.config.prior_strength
        c = (self.hits + m) / (self.promised + m)
        return min(self.config.max_calibration, max(self.config.min_calibration, c))

    def adjusted(self, probability: float) -> float:
        return min(1.0, self.calibration * probability)

    def threshold(self, saving_s: float = 1.0, cost_s: float = 1.0) -> float:
        """The smallest raw probability that launches a candidate with this saving and cost."""
        saving_s, cost_s = _positive("saving_s", saving_s, allow_zero=True), _positive("cost_s", cost_s, allow_zero=True)
        if saving_s == 0:
            return math.inf
        weighted = cost_s * self.config.ratio
        p_adj = weighted / (saving_s + weighted)          # p' * S = (1 - p') * C * ratio
        return max(self.config.min_probability, p_adj / self.calibration)

    def worth_it(self, probability: float, saving_s: float, cost_s: float) -> bool:
        """True when p' * S > (1 - p') * C * ratio and p >= min_probability."""
        if not 0.0 <= _positive("probability", probability, allow_zero=True) <= 1.0:
            raise ValueError(f"probability must lie in [0, 1], got {probability!r}")
        saving_s, cost_s = _positive("saving_s", saving_s, allow_zero=True), _positive("cost_s", cost_s, allow_zero=True)
        if probability < self.config.min_probability or saving_s <= 0:
            return False
        p = self.adjusted(probability)
        return p * saving_s > (1.0 - p) * cost_s * self.config.ratio

    def refusal(self, probability: float, saving_s: float, cost_s: float) -> str | None:
        """Why `worth_it` says no, in words with the numbers compared; None when it says yes."""
        if self.worth_it(probability, saving_s, cost_s):
            return None
        cfg = self.config
        if probability < cfg.min_probability:
            return f"probability {probability:.2f} is below the minimum {cfg.min_probability:.2f}"
        if saving_s <= 0:
            return (f"expected saving 0.0 s: a right guess would save no live time, so no launch is worth it "
                    f"(any cost exceeds that saving; this one costs {cost_s:.1f} s)")
        p = self.adjusted(probability)
        calibrated = (f" (predicted {probability:.2f}, calibrated x{self.calibration:.2f} by recent outcomes)"
                      if abs(p - probability) > 5e-3 else "")
        return (f"probability {p:.2f}{calibrated} x saving {saving_s:.1f} s = {p * saving_s:.2f} s is not more "
                f"than {1 - p:.2f} x cost {cost_s:.1f} s x ratio {cfg.ratio:g} = "
                f"{(1 - p) * cost_s * cfg.ratio:.2f} s")

    def net_value(self, probability: float, saving_s: float, cost_s: float) -> float:
        """Expected seconds gained: p' * S - (1 - p') * C * ratio (ranks candidates)."""
        p = self.adjusted(probability)
        return p * saving_s - (1.0 - p) * cost_s * self.config.ratio

    def capacity(self, in_flight_total: int, in_flight_workflow: int) -> int:
        """How many more shadow runs a workflow instance may launch now."""
        _count("in_flight_total", in_flight_total)
        _count("in_flight_workflow", in_flight_workflow)
        return max(0, min(self.config.max_concurrent - in_flight_total,
                          self.config.max_per_workflow - in_flight_workflow))


def expected_saving(duration_s: float, eta_s: float | None, launch_overhead_s: float = 0.0,
                    margin: float = 0.25) -> float:
    """Live seconds saved if the guess is right.

    The live run never waits for a shadow output: it reuses one only if it is complete when the live
    run reaches the step, so a shadow run that finishes late saves nothing (and its compute is
    wasted). With slack = `eta - overhead`, the saving is `duration` when the slack covers
    `duration x (1 + margin)`, 0 when it is at most `duration`, and linear in between: ETAs and
    durations are estimates, and `margin` is the room they are given. An unknown ETA counts as
    enough time.
    """
    d = _positive("duration_s", duration_s, allow_zero=True)
    overhead = _positive("launch_overhead_s", launch_overhead_s, allow_zero=True)
    m = _positive("margin", margin, allow_zero=True)
    if eta_s is None or d == 0:
        return d
    slack = _positive("eta_s", eta_s, allow_zero=True) - overhead
    if slack >= d * (1 + m):
        return d
    if slack <= d:
        return 0.0
    return d * (slack - d) / (d * m)


def update_launch_estimate(prior: float | None, samples: Sequence[float], weight: float = 0.5,
                           q: float = 0.9) -> float | None:
    """The launch latency to plan with: the `q` upper quantile (nearest rank) of the new `samples`
    (seconds from a prediction to its shadow run starting), blended with the `prior` estimate (an
    EWMA of `weight`); None until something was observed. An upper quantile, not the median: a
    shadow run that starts late is wasted, and launches slow down together when several start at
    once on a busy host. Negative or non-finite samples (clock skew) are ignored."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must lie in [0, 1], got {q!r}")
    good = sorted(x for x in samples if isinstance(x, (int, float)) and math.isfinite(x) and x >= 0)
    if not good:
        return prior
    upper = good[min(len(good) - 1, max(0, math.ceil(q * len(good)) - 1))]
    return upper if prior is None else weight * upper + (1 - weight) * prior
