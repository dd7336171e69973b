"""`shadow-dagster bench load` in smoke mode: 8 live instances, short waits, off then on.

Only what must hold whatever the machine's noise: every live instance completes in both modes, the
sensor launches real shadow runs, none of them writes live storage or runs a critical step, every one
carries the shadow tags, and the last line is one JSON object with the figures. No timed assertion.
"""

from __future__ import annotations

import pytest
from support.bench_cli import bench_json

pytestmark = pytest.mark.slow

KEYS = ("live", "tick_s_mean", "tick_s_p95", "shadow_runs_launched", "hits", "slowdown_p50", "slowdown_p95",
        "slowdown_max", "slowed_over_3pct", "critical_slowdown_max", "off_wall_s", "on_wall_s")


def test_load_bench_smoke():
    # the guard is off here: the invariants must not depend on what else loads the test machine
    out, why = bench_json(["load", "--live", "8", "--batches", "2", "--ack-s", "7", "--fetch-s", "1.5",
                           "--spread-s", "2", "--tick-s", "1", "--max-load-per-core", "none", "--json"],
                          KEYS, bulky="per_instance")
    assert out["live"] == 8 and out["batches"] == ["off", "on"], why
    assert out["failed_instances"] == 0 and out["errors"] == [], why
    assert out["instances_compared"] == 8 and len(out["per_instance"]) == 8, why
    assert all(r["off_s"] > 0 and r["on_s"] > 0 for r in out["per_instance"]), why
    assert out["sensor_errors"] == [], why
    assert out["shadow_runs_launched"] > 0, why
    assert out["shadow_runs_recorded"] == out["shadow_runs_launched"], why       # each launch became a run
    assert out["shadow_untagged"] == 0, why
    assert out["critical_in_shadow"] == 0, why
    assert out["shadow_live_writes"] == 0 and out["missing_live_outputs"] == 0, why
    assert out["hits"] + out["misses"] + out["unresolved"] == out["shadow_runs_recorded"], why
    assert out["hits"] <= out["live_steps_reused"], why          # a hit is a live step that took the shadow output
    assert out["ticks"] > 0 and out["tick_s_mean"] > 0, why
