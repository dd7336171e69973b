"""The speculative sensor's cursor, typed (no Dagster import).

Stored as the JSON Dagster keeps for the sensor, in the layout earlier versions wrote, so that an
upgrade keeps what was launched: `launched` and `predicted` (prediction id -> epoch s), `tick`
([started, seconds it took]), `launch_s` (the launcher latency estimate) and `report` ([when the
report was last logged, whether something changed since]). A corrupt cursor reads as a new one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class TickCursor:
    launched: dict[str, float] = field(default_factory=dict)    # prediction id -> when its run was requested
    predicted: dict[str, float] = field(default_factory=dict)   # prediction id -> when it was first recorded
    tick: tuple[float, float] | None = None                     # the last tick: (started, seconds it took)
    launch_s: float | None = None                               # prediction-to-start estimate of the launcher
    report_at: float | None = None                              # when the report was last logged
    report_dirty: bool = True                                   # something changed since then

    @classmethod
    def parse(cls, raw: str | None) -> TickCursor:
        if not raw:
            return cls()
        try:
            doc = json.loads(raw)
            tick = doc.get("tick")
            tick = (float(tick[0]), float(tick[1])) if isinstance(tick, list) and len(tick) == 2 else None
            report = doc.get("report")
            at, dirty = (_number(report[0]), bool(report[1])) if isinstance(report, list) and len(report) == 2 \
                else (None, True)
            return cls(dict(doc.get("launched", {})), dict(doc.get("predicted", {})), tick,
                       _number(doc.get("launch_s")), at, dirty)
        except (ValueError, AttributeError, TypeError):
            return cls()

    def dumps(self) -> str:
        return json.dumps({"launched": self.launched, "predicted": self.predicted,
                           "tick": list(self.tick) if self.tick else None, "launch_s": self.launch_s,
                           "report": [self.report_at, self.report_dirty]}, sort_keys=True)

    def forget_before(self, cutoff: float) -> None:
        """Drop launches and predictions older than `cutoff` (epoch s): their TTL is over."""
        self.launched = {k: v for k, v in self.launched.items() if v >= cutoff}
        self.predicted = {k: v for k, v in self.predicted.items() if v >= cutoff}

    def budget_wait(self, now: float, max_tick_share: float | None) -> float:
        """Seconds until the sensor may tick again so that its ticks take at most `max_tick_share` of
        the wall clock (0 when it may tick now): a tick that took d seconds waits d / share from its start."""
        if max_tick_share is None or not self.tick:
            return 0.0
        started, took = self.tick
        return max(0.0, started + took / max_tick_share - now)

    def report_due(self, now: float, interval_s: float | None) -> bool:
        """Whether the report should be logged now: on, something changed, and the last one is
        `interval_s` old (a corrupt or future time, clock skew, never stops it for good)."""
        last = self.report_at
        if last is not None and not (math.isfinite(last) and last <= now):
            last = None
        return interval_s is not None and self.report_dirty and (last is None or now - last >= interval_s)


__all__ = ["TickCursor"]
