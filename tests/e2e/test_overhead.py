"""What the integration costs a project: loading an integrated code location imports none of the
heavy libraries the history and the stores need (they load on first use), and `bench overhead`
prints both figures. No timed assertion."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.bench_cli import bench_json

from shadow_dagster_bench.overhead import write_project

HEAVY = ("sqlalchemy", "numpy", "pandas", "networkx", "hmmlearn", "scipy", "sklearn", "duckdb")


def test_loading_an_integrated_code_location_imports_no_heavy_library(tmp_path):
    write_project(tmp_path, iters=10)
    code = ("import json, sys, dagster\n"
            f"before = {{m for m in {HEAVY!r} if m in sys.modules}}\n"
            "import project_shadow\n"
            "repo = project_shadow.defs.get_repository_def()\n"
            "assert repo.get_sensor_def('shadow_speculative_sensor') and repo.get_job('everything')\n"
            f"print(json.dumps(sorted({{m for m in {HEAVY!r} if m in sys.modules}} - before)))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DAGSTER_HOME": str(tmp_path), "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.slow
def test_bench_overhead_prints_both_figures():
    out, why = bench_json(["overhead", "--samples", "1", "--runs", "1", "--iters", "10", "--json"],
                          ("import_s_added", "live_run_ratio", "load_s", "run_wall_s"), bulky="load_samples_s")
    assert out["live_run_ratio"] > 0 and set(out["load_s"]) == set(out["run_wall_s"]) == {"plain", "shadow"}, why
    assert out["samples"] == out["runs"] == 1, why
