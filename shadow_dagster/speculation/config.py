"""The speculative sensor's settings, typed and validated when the definitions load (no Dagster import).

`SpeculationConfig` composes the launch policy (`PolicyConfig`) and pre-fetch / pre-allocation
(`PrepareConfig`) with the sensor's own timing; `shadow_definitions(..., speculation=...)` and
`build_speculative_sensor(config=...)` take it. A plain dict of the same names is accepted too
(`SpeculationConfig.from_options`), with the prepare settings flat (`{"prefetch": True}`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from shadow_dagster.speculation.policy import PolicyConfig

PURGE_MODES = ("all", "misses", "off")
# what the sensor's keyword arguments for locations were, and the ShadowStorage field each is now
LOCATION_OPTIONS = {"signal_store_url": "signal_store_url", "output_store_url": "output_store_url",
                    "shadow_dir": "shadow_dir", "fingerprint_dir": "fingerprint_dir"}


@dataclass(frozen=True)
class PrepareConfig:
    """Sensor options: `prefetch`/`warmup` switch each part off; budgets are per tick (all instances)."""

    prefetch: bool = False         # opt-in: it only pays when live storage is slower than the cache's disk
    prefetch_budget_bytes: int = 1 << 30
    prefetch_budget_s: float = 10.0
    warmup: bool = True
    warmup_budget_s: float = 30.0

    def __post_init__(self):
        for name in ("prefetch", "warmup"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        b = self.prefetch_budget_bytes
        if isinstance(b, bool) or not isinstance(b, int) or b < 0:
            raise ValueError(f"prefetch_budget_bytes must be an integer >= 0, got {b!r}")
        for name in ("prefetch_budget_s", "warmup_budget_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {v!r}")


def _seconds(name: str, value, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number of seconds >= 0{' or None' if optional else ''}, "
                         f"got {value!r}")


def _count(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class SpeculationConfig:
    """Everything the speculative sensor is told.

    - `policy`: when a predicted step is worth a shadow run (`PolicyConfig`); `prepare`: pre-fetch
      (off by default: it only pays when live storage is slower than the cache's disk) and
      pre-allocation (`PrepareConfig`).
    - `horizon`: steps predicted ahead of each live instance.
    - `ttl_s`: a prediction expires this long after it was made; `chain_gap_s`: an instance whose
      last run ended this long ago is over (the next job of a chain may still follow before);
      `divergence_slack`: a prediction misses once the instance started this many more steps than
      the predicted position without it (parallel steps finish out of order).
    - `launch_overhead_s`: the least a shadow run launch is assumed to cost (the sensor measures
      the real one); `pending_grace_s`: how long a requested shadow run may take to appear.
    - `minimum_interval_seconds`, `running`: the sensor's interval and default status.
    - `purge` ("all", "misses", "off"): which settled shadow runs are deleted once finished for
      `retention_s`; their outcome rows stay.
    - `max_tick_share` (None: off; 0.25 suits hosts with many live runs): ticks take at most this
      share of the wall clock.
    - `report_interval_s` (None: off): the sensor logs `speculation_report` at most this often when
      something changed, over `report_window_days`.
    - `schedule_horizon_s` (None: off): a run a running schedule requests within this many seconds
      is planned for like a live instance that has not started.
    """

    policy: PolicyConfig = field(default_factory=PolicyConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    horizon: int = 2
    ttl_s: float = 3600.0
    chain_gap_s: float = 300.0
    divergence_slack: int = 2
    launch_overhead_s: float = 1.0
    pending_grace_s: float = 120.0
    minimum_interval_seconds: int = 5
    running: bool = True
    purge: str = "all"
    retention_s: float = 86400.0
    max_tick_share: float | None = None
    report_interval_s: float | None = 60.0
    report_window_days: float = 30.0
    schedule_horizon_s: float | None = 900.0

    def __post_init__(self):
        if not isinstance(self.policy, PolicyConfig):
            raise TypeError(f"policy must be a PolicyConfig, got {type(self.policy).__name__}")
        if not isinstance(self.prepare, PrepareConfig):
            raise TypeError(f"prepare must be a PrepareConfig, got {type(self.prepare).__name__}")
        _count("horizon", self.horizon, 1)
        _count("divergence_slack", self.divergence_slack, 0)
        _count("minimum_interval_seconds", self.minimum_interval_seconds, 1)
        for name in ("ttl_s", "chain_gap_s", "launch_overhead_s", "pending_grace_s", "retention_s"):
            _seconds(name, getattr(self, name))
        for name in ("report_interval_s", "schedule_horizon_s"):
            _seconds(name, getattr(self, name), optional=True)
        if not isinstance(self.running, bool):
            raise ValueError(f"running must be True or False, got {self.running!r}")
        if self.purge not in PURGE_MODES:
            raise ValueError(f"purge must be one of {PURGE_MODES}, got {self.purge!r}")
        share = self.max_tick_share
        if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                                  or not 0 < share <= 1):
            raise ValueError(f"max_tick_share must be a number in (0, 1] or None, got {share!r}")
        w = self.report_window_days
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w < math.inf:
            raise ValueError(f"report_window_days must be a positive, finite number of days, got {w!r}")

    @classmethod
    def from_options(cls, options: SpeculationConfig | Mapping | None = None, **defaults) -> SpeculationConfig:
        """A config from a SpeculationConfig, a dict of its fields (prepare settings may be given
        flat: `prefetch`, `warmup`, ...), or None; `defaults` fill fields the options leave out.
        An unknown name raises TypeError listing the known ones."""
        if isinstance(options, cls):
            return options
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise TypeError(f"speculation must be a SpeculationConfig or a dict of its fields, got {options!r}")
        own = {f.name for f in fields(cls)}
        flat = {f.name for f in fields(PrepareConfig)}
        moved = sorted(set(options) & set(LOCATION_OPTIONS))
        if moved:
            raise TypeError(f"{', '.join(map(repr, moved))}: locations are not speculation options; pass "
                            f"storage=ShadowStorage({', '.join(LOCATION_OPTIONS[k] + '=...' for k in moved)})")
        unknown = sorted(set(options) - own - flat)
        if unknown:
            raise TypeError(f"unknown speculation option(s) {', '.join(map(repr, unknown))}; known: "
                            f"{', '.join(sorted(own | flat))}")
        kwargs = {**{k: v for k, v in defaults.items() if k not in options},
                  **{k: v for k, v in options.items() if k in own}}
        given = {k: v for k, v in options.items() if k in flat}
        if given:
            if "prepare" in options:
                raise TypeError(f"give the prepare settings in prepare=PrepareConfig(...) or flat, not both: "
                                f"{', '.join(sorted(given))}")
            kwargs["prepare"] = PrepareConfig(**given)
        return cls(**kwargs)


__all__ = ["PURGE_MODES", "PrepareConfig", "SpeculationConfig"]
