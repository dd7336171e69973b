"""The example code location: definitions load, real simulated runs, the chain sensor, criticality."""

import datetime as dt
import importlib.util
import json
import os
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterRunStatus, Definitions, build_sensor_context

from demo_project import data
from demo_project.chain import UPSTREAM_RUN_TAG, daily_pipeline_chain
from demo_project.definitions import defs
from demo_project.resources import FAST_SCALE, SCALE_ENV, ExampleSettings, scale_from_env
from demo_project.simulate import partition_keys, simulate
from shadow_dagster.tags import CRITICAL_TAG, SHADOW_TAG, WORKFLOW_TAG, is_critical

ROOT = Path(__file__).resolve().parents[2]
SUNDAY, MONDAY = "2025-03-09", "2025-03-10"          # full-refresh branch, incremental branch
CRITICAL_STEPS = {"warehouse_full_load", "warehouse_incremental_load", "published_forecast", "send_digest"}
FAST = {"settings": ExampleSettings(scale=FAST_SCALE)}


def test_definitions_load_with_jobs_sensor_and_code_versions():
    Definitions.validate_loadable(defs)
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"ingest_job", "train_job", "notify_job"} <= jobs
    assert {t.job_name for t in defs.resolve_sensor_def("daily_pipeline_chain").targets} == {"train_job", "notify_job"}
    specs = defs.resolve_all_asset_specs()
    assert {s.key.to_user_string() for s in specs} >= {"raw_orders", "customer_snapshot_full",
                                                       "customer_snapshot_delta", "demand_model"}
    missing = [s.key for s in specs if not s.code_version and s.group_name != "shadow_dagster"]
    assert missing == []
    assert all(defs.resolve_job_def(j).partitions_def is not None for j in ("ingest_job", "train_job", "notify_job"))


def test_top_level_definitions_file_exposes_the_example():
    spec = importlib.util.spec_from_file_location("example_code_location", ROOT / "definitions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.defs, Definitions)
    assert module.defs.resolve_job_def("ingest_job").name == "ingest_job"


def test_critical_steps_untagged_non_critical_tagged():
    seen = {}
    for name in ("ingest_job", "train_job", "notify_job"):
        for node in defs.resolve_job_def(name).nodes:
            seen[node.name] = dict(node.tags)
    assert CRITICAL_STEPS <= set(seen)
    for step, tags in seen.items():
        if step in CRITICAL_STEPS:
            assert CRITICAL_TAG not in tags and is_critical(tags), step
        else:
            assert tags.get(CRITICAL_TAG) == "false" and not is_critical(tags), step
    # asset-level tags carry the same marking, so the UI and asset selections can see it
    asset_tags = {s.key.to_user_string(): s.tags for s in defs.resolve_all_asset_specs()}
    assert asset_tags["demand_model"].get(CRITICAL_TAG) == "false"
    assert CRITICAL_TAG not in asset_tags["published_forecast"]


def _steps(instance, run_id):
    return {s.step_key: s.status.value for s in instance.get_run_step_stats(run_id)}


def test_simulated_days_run_both_jobs_and_both_branches(instance):
    ids = simulate(instance, days=2, runs_per_day=1, end=dt.date.fromisoformat(MONDAY))
    runs = [instance.get_run_by_id(i) for i in ids]
    assert [r.job_name for r in runs] == ["ingest_job", "train_job", "notify_job"] * 2
    assert all(r.status == DagsterRunStatus.SUCCESS for r in runs)
    assert [r.tags["dagster/partition"] for r in runs] == [SUNDAY] * 3 + [MONDAY] * 3
    assert {r.tags[WORKFLOW_TAG] for r in runs[:3]} == {f"daily_pipeline:{SUNDAY}"}
    assert {r.tags[WORKFLOW_TAG] for r in runs[3:]} == {f"daily_pipeline:{MONDAY}"}
    assert runs[1].tags[UPSTREAM_RUN_TAG] == runs[0].run_id and runs[2].tags[UPSTREAM_RUN_TAG] == runs[1].run_id

    sunday, monday = _steps(instance, ids[0]), _steps(instance, ids[3])
    assert sunday["warehouse_full_load"] == "SUCCESS" and sunday["warehouse_incremental_load"] == "SKIPPED"
    assert monday["warehouse_incremental_load"] == "SUCCESS" and monday["warehouse_full_load"] == "SKIPPED"
    for steps in (sunday, monday):
        assert {k for k, v in steps.items() if v == "SUCCESS"} >= {"raw_orders", "clean_orders",
                                                                  "customer_snapshot", "demand_features"}
    assert _steps(instance, ids[1]) == {k: "SUCCESS" for k in
                                        ("demand_model", "demand_forecast", "forecast_report", "published_forecast")}
    assert _steps(instance, ids[2]) == {"compose_digest": "SUCCESS", "send_digest": "SUCCESS"}

    external = Path(instance.root_directory) / "external"
    assert (external / f"warehouse/customers_full_{SUNDAY}.csv").exists()
    assert not (external / f"warehouse/customers_delta_{SUNDAY}.csv").exists()
    assert (external / f"warehouse/customers_delta_{MONDAY}.csv").exists()
    assert f"<h1>Demand forecast for the day after {MONDAY}" in (external / f"published/report_{MONDAY}.html").read_text()
    digest = json.loads((external / f"outbox/digest_{MONDAY}.json").read_text())
    assert digest["partition"] == MONDAY and len(digest["top_products"]) == 5
    # fast mode really scaled the compute down (full scale draws tens of thousands of orders)
    rows = instance.get_latest_materialization_event(AssetKey("raw_orders")).asset_materialization.metadata["rows"]
    assert rows.value < 5_000

    # data versions are content hashes: a re-run of a day reproduces them, another day differs
    _ingest(instance, MONDAY, {WORKFLOW_TAG: "daily_pipeline:2025-03-10#2"})
    monday_versions = _data_versions(instance, "demand_features", MONDAY)
    assert len(monday_versions) == 2 and len(set(monday_versions)) == 1
    assert _data_versions(instance, "demand_features", SUNDAY) != monday_versions[:1]
    stored = defs.load_asset_value(AssetKey("demand_features"), partition_key=MONDAY, instance=instance)
    assert monday_versions[0] == data.content_hash(stored)


def _data_versions(instance, asset, partition):
    from dagster import AssetRecordsFilter

    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=10).records
    return [r.asset_materialization.tags["dagster/data_version"] for r in records]


def _ingest(instance, partition, tags):
    result = defs.resolve_job_def("ingest_job").execute_in_process(
        instance=instance, partition_key=partition, tags=tags, resources=FAST)
    return result.run_id


def _shadow_ingest(instance, partition, tags):
    """A shadow run as the speculative sensor makes it: only non-critical steps."""
    from dagster import materialize

    from shadow_dagster.dagster.io_manager import ShadowIOManager
    from demo_project.assets_ingest import clean_orders, raw_orders

    return materialize([raw_orders, clean_orders], instance=instance, partition_key=partition, tags=tags,
                       resources={**FAST, "io_manager": ShadowIOManager()}).run_id


def _tick(instance, cursor=None):
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return daily_pipeline_chain.evaluate_tick(context)


def test_chain_sensor_requests_next_job_with_workflow_tag(instance):
    assert _tick(instance).run_requests == []          # nothing has run yet
    tagged = _ingest(instance, MONDAY, {WORKFLOW_TAG: "daily_pipeline:2025-03-10#live"})
    untagged = _ingest(instance, SUNDAY, {})
    # a shadow run executes only non-critical steps (the critical guard refuses the others)
    _shadow_ingest(instance, MONDAY, {WORKFLOW_TAG: "daily_pipeline:2025-03-10#shadow", SHADOW_TAG: "true"})

    first = _tick(instance)
    by_upstream = {r.tags[UPSTREAM_RUN_TAG]: r for r in first.run_requests}
    assert set(by_upstream) == {tagged, untagged}      # the shadow run is never chained
    live = by_upstream[tagged]
    assert live.job_name == "train_job" and live.partition_key == MONDAY
    assert live.tags[WORKFLOW_TAG] == "daily_pipeline:2025-03-10#live"
    assert by_upstream[untagged].tags[WORKFLOW_TAG] == f"daily_pipeline:{SUNDAY}#{untagged[:8]}"

    # launch what the sensor asked for; the next tick chains notify_job to each, never train_job again
    trains = {}
    for request in first.run_requests:
        result = defs.resolve_job_def(request.job_name).execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags, resources=FAST)
        trains[result.run_id] = request.tags[WORKFLOW_TAG]
    second = _tick(instance, first.cursor)
    assert sorted((r.job_name, r.tags[UPSTREAM_RUN_TAG], r.tags[WORKFLOW_TAG]) for r in second.run_requests) == \
        sorted(("notify_job", run_id, key) for run_id, key in trains.items())
    assert all(r.run_key == f"notify_job:{r.tags[UPSTREAM_RUN_TAG]}" for r in second.run_requests)
    for request in second.run_requests:
        defs.resolve_job_def(request.job_name).execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags, resources=FAST)
    assert _tick(instance, second.cursor).run_requests == []      # every chain is complete
    assert _tick(instance).run_requests == []                     # a fresh cursor re-reads, skips chained


def test_partition_keys_and_scale_validation(monkeypatch):
    assert partition_keys(3, dt.date(2025, 3, 10)) == ["2025-03-08", "2025-03-09", "2025-03-10"]
    with pytest.raises(ValueError, match="at least 1"):
        partition_keys(0)
    with pytest.raises(ValueError, match="first partition"):
        partition_keys(5, dt.date(2024, 1, 2))
    monkeypatch.setenv(SCALE_ENV, "0.5")
    assert scale_from_env() == 0.5
    monkeypatch.setenv(SCALE_ENV, "fast")
    with pytest.raises(ValueError, match=SCALE_ENV):
        scale_from_env()
    assert data.is_full_refresh_day(SUNDAY) and not data.is_full_refresh_day(MONDAY)


def test_warehouse_load_time_from_env_and_its_limits(monkeypatch, tmp_path):
    import pandas as pd

    from demo_project.resources import LOAD_ENV, ExternalSystem, load_seconds_from_env

    monkeypatch.delenv(LOAD_ENV, raising=False)
    assert load_seconds_from_env() == 0.0
    monkeypatch.setenv(LOAD_ENV, "2.5")
    assert load_seconds_from_env() == 2.5
    for bad in ("soon", "-1", "601", "nan"):
        monkeypatch.setenv(LOAD_ENV, bad)
        with pytest.raises(ValueError, match=LOAD_ENV):
            load_seconds_from_env()

    class Home:
        root_directory = str(tmp_path)

    frame = pd.DataFrame({"a": [1, 2]})
    target = ExternalSystem(load_s=0.0).load_table(Home(), "warehouse/t.csv", frame)
    assert target.read_text() == "a\n1\n2\n"
    with pytest.raises(ValueError, match="load_s"):
        ExternalSystem(load_s=-3.0).load_table(Home(), "warehouse/u.csv", frame)
    assert not (tmp_path / "external" / "warehouse" / "u.csv").exists()


def test_demo_instance_config_and_cli_validation(tmp_path, monkeypatch):
    import shutil
    import subprocess
    import sys

    from dagster import DagsterInstance
    from shadow_dagster.dagster.compat import ConsolidatedSqliteEventLogStorage

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, ConsolidatedSqliteEventLogStorage)
        assert instance.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 4
        assert not instance.telemetry_enabled
    assert (home / "event_log.db").exists()
    done = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
                           "-w", "workspace.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Validation successful for code location shadow_dagster_example" in done.stderr + done.stdout


def test_fingerprint_show_takes_the_names_a_user_sees(instance):
    """The 3-job chain is the workflow `ingest_job` (its first job) in the fingerprint views and in
    `predict`; its instances' keys read `daily_pipeline:<day>`. Both names show its fingerprint; a
    later job of the chain or an unknown name says which workflows have one."""
    from click.testing import CliRunner

    from shadow_dagster.cli import main
    from shadow_dagster.dagster.ingest import ingest
    from shadow_dagster.store.engine import default_url
    from shadow_dagster.store.signal_store import SignalStore

    simulate(instance, days=2, runs_per_day=1, end=dt.date.fromisoformat(MONDAY))
    ingest(instance, SignalStore(default_url()))
    runner = CliRunner()
    assert runner.invoke(main, ["fingerprint", "fit"]).exit_code == 0
    by_job = runner.invoke(main, ["fingerprint", "show", "ingest_job"])
    assert by_job.exit_code == 0 and "workflow 'ingest_job'" in by_job.output, by_job.output
    by_key = runner.invoke(main, ["fingerprint", "show", "daily_pipeline"])
    assert by_key.exit_code == 0 and "run as workflow 'ingest_job'" in by_key.output
    assert by_key.output.endswith(by_job.output)                       # the same fingerprint
    later = runner.invoke(main, ["fingerprint", "show", "train_job"])
    assert later.exit_code == 1 and "later job of workflow 'ingest_job'" in later.output
    unknown = runner.invoke(main, ["fingerprint", "show", "nope"])
    assert unknown.exit_code == 1 and "workflows with a fingerprint: ingest_job" in unknown.output
    for out in (later, unknown):
        assert len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output


def test_dagster_yaml_guidance_is_one_block_and_one_event_log_from_any_directory(tmp_path, monkeypatch):
    """README, the repository's dagster.yaml and the per-run-storage error give the same block, and
    with it a CLI started in another working directory reads the same event log, in DAGSTER_HOME."""
    import subprocess
    import sys

    import dagster as dg

    from shadow_dagster.dagster.ingest import FIX_PER_RUN_STORAGE, check_event_storage
    from shadow_dagster.dagster.instance_config import EVENT_LOG_YAML

    root = Path(__file__).resolve().parents[2]
    assert EVENT_LOG_YAML in (root / "dagster.yaml").read_text()
    assert f"```yaml\n{EVENT_LOG_YAML}```" in (root / "README.md").read_text()
    assert EVENT_LOG_YAML in FIX_PER_RUN_STORAGE

    @dg.op
    def one():
        return 1

    @dg.job
    def tiny():
        one()

    home, here, elsewhere = tmp_path / "home", tmp_path / "here", tmp_path / "elsewhere"
    for d in (home, here, elsewhere):
        d.mkdir()
    (home / "dagster.yaml").write_text(EVENT_LOG_YAML + "telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.chdir(here)
    with dg.DagsterInstance.get() as inst:
        check_event_storage(inst)                                  # consolidated: a global cursor works
        assert tiny.execute_in_process(instance=inst).success
        events = len(inst.event_log_storage.get_logs_for_all_runs_by_log_id(after_cursor=-1))
    assert events > 0 and (home / "event_log.db").exists()
    cli = Path(sys.executable).with_name("shadow-dagster")
    done = subprocess.run([str(cli), "ingest", "--json"], cwd=elsewhere, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "DAGSTER_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["events"] == events
    assert not any(here.iterdir()) and not any(elsewhere.iterdir())   # no log in a working directory
