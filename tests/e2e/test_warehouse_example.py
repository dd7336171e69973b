"""The second example (examples/warehouse): an autoloaded project whose assets write DuckDB tables
and files through resources (`deps=`, `MaterializeResult`, monthly and weekly partitions, an
`AssetSelection.all()` job, an eager report and an asset sensor downstream of non-critical
metrics), integrated only as README.md says. Shown on it: shadow outputs reused; live outputs
identical with speculation on and off; no live file or table written, no shadow materialization
latest (instance API and the UI's GraphQL), no automation or sensor triggered while the shadow runs
run; user jobs unchanged."""

import hashlib
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from shadow_dagster import with_shadow
from shadow_dagster.dagster.shadow_runner import execute_shadow_request, shadow_request
from shadow_dagster.dagster.shadow_job import build_catalog
from shadow_dagster.envs import files_env
from shadow_dagster.tags import REUSED_FROM, is_shadow_run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "warehouse"


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    monkeypatch.setenv("WAREHOUSE_TRIPS_PER_MONTH", "3000")
    monkeypatch.syspath_prepend(str(EXAMPLE))

    def load(data_dir, *, shadow=True):
        monkeypatch.setenv("WAREHOUSE_DATA_DIR", str(data_dir))
        import warehouse_project.defs

        user = dg.load_defs(warehouse_project.defs)
        return with_shadow(user) if shadow else user

    yield load
    for name in [m for m in sys.modules if m == "warehouse_project" or m.startswith("warehouse_project.")]:
        del sys.modules[name]


def _steps(defs, job):
    return sorted(n.name for n in defs.resolve_job_def(job).graph.node_defs)


def test_the_code_location_loads_and_user_jobs_keep_their_steps(warehouse, tmp_path, dagster_home):
    done = subprocess.run([str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-m",
                           "warehouse_project.definitions"], cwd=EXAMPLE, capture_output=True, text=True,
                          timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(EXAMPLE),
                                            "WAREHOUSE_DATA_DIR": str(tmp_path / "data")})
    assert "Validation successful for code location warehouse_project.definitions" in done.stdout + done.stderr
    user, merged = warehouse(tmp_path / "data", shadow=False), warehouse(tmp_path / "data")
    for job in ("trip_update_job", "weekly_update_job", "publish_job"):
        assert _steps(merged, job) == _steps(user, job)
    assert _steps(user, "trip_update_job") == ["manhattan_report", "manhattan_stats", "taxi_trips",
                                                "taxi_trips_file", "taxi_zones", "taxi_zones_file"]
    catalog = {a.rsplit("/", 1)[-1]: i for a, i in build_catalog(merged.get_repository_def()).items()}
    for name in ("manhattan_stats", "trips_by_week"):
        assert not catalog[name].critical and catalog[name].refusal is None
    assert {n for n, i in catalog.items() if not i.critical} == {"manhattan_stats", "trips_by_week"}


class Gate:
    """Holds a shadow step at its first write of an output file, so the test can look at the live
    side while the shadow run is in the middle of its work."""

    def __init__(self, monkeypatch):
        self.entered, self.release = threading.Event(), threading.Event()
        original = files_env.FilesEnvironment.path

        def path(env, rel):
            out = original(env, rel)
            if rel.parts[:1] == ("outputs",) and not self.entered.is_set():
                self.entered.set()
                assert self.release.wait(120)
            return out

        monkeypatch.setattr(files_env.FilesEnvironment, "path", path)

    def run(self, defs, request, instance, check):
        out = {}
        self.entered.clear()
        self.release.clear()
        thread = threading.Thread(target=lambda: out.update(r=execute_shadow_request(defs, request, instance)))
        thread.start()
        try:
            assert self.entered.wait(120), "the shadow step never reached its output file"
            check()
        finally:
            self.release.set()
            thread.join()
        return out["r"]


def live_state(data: Path) -> dict:
    files = {str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(data.rglob("*")) if p.is_file()}
    return {"files": files, "tables": tables(data)}


def tables(data: Path) -> dict:
    conn = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        names = [r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return {n: conn.execute(f"SELECT * FROM {n} ORDER BY ALL").fetchall() for n in names}
    finally:
        conn.close()


def run_job(defs, instance, job, partition=None, assets=None):
    selection = [dg.AssetKey(a) for a in assets] if assets else None
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition,
                                                          asset_selection=selection)
    assert result.success
    return result


def latest_run(instance, key):
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return event.run_id if event else None


LATEST = """{ assetNodes { assetKey { path } assetMaterializations(limit: 1) { runId }
              latestMaterializationByPartition { runId partition } } }"""


def graphql_latest(context) -> dict:
    """asset -> run ids of its latest materialization overall and per partition, as the UI reads them."""
    from dagster_graphql.test.utils import execute_dagster_graphql

    result = execute_dagster_graphql(context, LATEST)
    assert not result.errors, result.errors
    return {"/".join(n["assetKey"]["path"]): sorted({m["runId"] for m in n["assetMaterializations"]}
                                                   | {m["runId"] for m in n["latestMaterializationByPartition"] if m})
            for n in result.data["assetNodes"]}


def test_reuse_with_nothing_live_touched_and_outputs_identical_to_speculation_off(
        warehouse, tmp_path, instance, monkeypatch, request):
    import contextlib

    from dagster_graphql.test.utils import define_out_of_process_context

    data = tmp_path / "data"
    defs = warehouse(data)
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLE))          # for the code server the UI's GraphQL reads
    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    ui = stack.enter_context(define_out_of_process_context(
        str(EXAMPLE / "warehouse_project" / "definitions.py"), None, instance))
    sensor = defs.get_sensor_def("weekly_published_sensor")

    def sensor_requests(cursor):
        ctx = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def(), cursor=cursor)
        result = sensor.evaluate_tick(ctx)
        return result.run_requests, result.cursor

    # live: January in full, February up to its tables (the run is still going)
    run_job(defs, instance, "trip_update_job", "2024-01-01")
    run_job(defs, instance, "trip_update_job", "2024-02-01", ["taxi_trips_file", "taxi_trips", "taxi_zones_file",
                                                               "taxi_zones"])
    automation = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    _, sensor_cursor = sensor_requests(None)
    stats_before = latest_run(instance, "manhattan_stats")
    ui_before = graphql_latest(ui)
    assert ui_before["manhattan_stats"] == [stats_before] and ui_before["trips_by_week"] == []
    gate = Gate(monkeypatch)

    def nothing_live_changed(state, asset):
        def check():
            assert live_state(data) == state                                 # no live file or table written
            assert latest_run(instance, "manhattan_stats") == stats_before   # no shadow materialization latest
            assert latest_run(instance, "trips_by_week") is None
            assert graphql_latest(ui) == ui_before                           # nor in the UI's GraphQL
            later = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=automation.cursor)
            assert later.get_num_requested(dg.AssetKey("manhattan_report")) == 0   # eager report not triggered
            assert sensor_requests(sensor_cursor)[0] == []                   # asset sensor not triggered
            assert any(is_shadow_run(r.tags) and r.tags.get("shadow_dagster/selection") == f'["{asset}"]'
                       for r in instance.get_runs())                         # the shadow run is in the live list
        return check

    state = live_state(data)
    stats_shadow = gate.run(defs, shadow_request(["manhattan_stats"], prediction_id="p-stats"), instance,
                            nothing_live_changed(state, "manhattan_stats"))
    week_shadow = gate.run(defs, shadow_request(["trips_by_week"], "2024-02-04", prediction_id="p-week"), instance,
                           nothing_live_changed(state, "trips_by_week"))
    assert stats_shadow.success and week_shadow.success and live_state(data) == state
    nothing_live_changed(state, "trips_by_week")()                           # and after they ended

    # live: the rest of February, then the weekly job, then what the asset sensor asks for
    feb = run_job(defs, instance, "trip_update_job", "2024-02-01", ["manhattan_stats", "manhattan_report"])
    assert feb.asset_materializations_for_node("manhattan_stats")[0].metadata[REUSED_FROM].value == stats_shadow.run_id
    week = run_job(defs, instance, "weekly_update_job", "2024-02-04")
    assert week.asset_materializations_for_node("trips_by_week")[0].metadata[REUSED_FROM].value == week_shadow.run_id
    ui_after = graphql_latest(ui)                                            # the UI shows the live runs
    assert ui_after["manhattan_stats"] == [feb.run_id] and ui_after["trips_by_week"] == [week.run_id]
    requests, _ = sensor_requests(sensor_cursor)
    assert len(requests) == 1                                                # the live write does trigger it
    run_job(defs, instance, "publish_job")

    # the same workflow without speculation
    off_data = tmp_path / "off"
    off_defs = warehouse(off_data, shadow=False)
    with dg.DagsterInstance.ephemeral() as off:
        run_job(off_defs, off, "trip_update_job", "2024-01-01")
        run_job(off_defs, off, "trip_update_job", "2024-02-01")
        run_job(off_defs, off, "weekly_update_job", "2024-02-04")
        run_job(off_defs, off, "publish_job")
    assert live_state(data)["tables"] == live_state(off_data)["tables"]
    on_files, off_files = live_state(data)["files"], live_state(off_data)["files"]
    assert {k: v for k, v in on_files.items() if k != "warehouse.duckdb"} == \
        {k: v for k, v in off_files.items() if k != "warehouse.duckdb"}
    assert "files/outputs/weekly_summary.txt" in on_files
