"""`shadow-dagster bench warehouse` on a small workload: the real speculative sensor pre-executes
each scheduled weekly step of examples/warehouse, and every one is reused, with nothing live
touched and the same outputs as without speculation (issue 11 items 5 and 6). No time is asserted."""

import json

from click.testing import CliRunner

from shadow_dagster.cli import main


def test_bench_warehouse_reuses_every_scheduled_weekly_step_safely(dagster_home):
    out = CliRunner().invoke(main, ["bench", "warehouse", "--months", "1", "--trips", "2000", "--query-s", "0.5",
                                    "--burners", "0", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output.strip().splitlines()[-1])
    assert result["weeks"] == 4 and result["shadow_runs"] == 4
    assert result["hits"] == 4 and result["misses"] == 0
    assert result["outputs_identical"] == 1 and result["live_writes"] == 0
    assert result["shadow_latest_seen"] == 0 and result["steps_added_to_user_jobs"] == 0
    assert result["ratio"] > 0 and set(result["weekly_wall_s"]) == {"off", "on"}


def test_bench_warehouse_refuses_bad_settings_in_one_line(dagster_home):
    out = CliRunner().invoke(main, ["bench", "warehouse", "--query-s", "-1"])
    assert out.exit_code == 2 and "Invalid value for '--query-s'" in out.output
