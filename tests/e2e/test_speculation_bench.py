"""`shadow-dagster bench speculation` in smoke mode: 2 instances per workload, short waits.

Only what must hold whatever the machine's noise: every mode ran every instance, the oracle
launched one shadow run per non-critical step of each path, the sensor launched real shadow runs
and settled each as a hit or a miss, nothing errored, and the last line is one JSON object with the
figures the issue names. No timed assertion.
"""

from __future__ import annotations

import pytest
from support.bench_cli import bench_json
from click.testing import CliRunner

from shadow_dagster.cli import main

pytestmark = pytest.mark.slow

KEYS = ("ratio", "efficiency", "waste", "hit_rate", "adversarial_slowdown", "reuse_overhead_s",
        "tick_s_100_live", "off_wall_s", "on_wall_s", "oracle_wall_s", "oracle_ratio", "launch_latency_s")


def test_speculation_bench_smoke():
    out, why = bench_json(["speculation", "--instances", "2", "--history", "3", "--work-s", "2", "--json"],
                          KEYS, bulky="sensor_skips")
    assert out["compute"] == "wait" and out["instances"] == 2, why
    assert out["sensor_errors"] == [] and out["launch_errors"] == [], why
    pred = out["predictable"]
    for mode in ("off", "on", "oracle"):
        assert pred[mode]["wall"]["mean"] > 0, why
    assert pred["oracle"]["shadow_launched"] == 2 * 2, why          # features_* and quality, per instance
    on = pred["on"]
    assert on["shadow_launched"] > 0, why
    assert on["hits"] + on["misses"] == on["shadow_runs"] == on["shadow_launched"], why
    assert 0.0 <= out["waste"] <= 1.0 and out["reuse_overhead_s"] > 0, why
    assert out["launch_latency_s"]["predictable"] > 0, why       # learned from the runs it launched


def test_speculation_bench_rejects_an_unknown_compute():
    result = CliRunner().invoke(main, ["bench", "speculation", "--compute", "gpu"])
    assert result.exit_code == 2 and "gpu" in result.output
    from shadow_dagster_bench.speculation import run

    with pytest.raises(ValueError, match="compute"):
        run(compute="gpu")
