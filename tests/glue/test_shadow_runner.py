"""Shadow runs execute on their own instance: the live catalog, automation and asset sensors never
see a shadow event, while the shadow run runs or after; live runs still reuse its outputs."""

from __future__ import annotations

import threading

import pytest
from dagster import (
    AssetKey,
    AutomationCondition,
    DailyPartitionsDefinition,
    Definitions,
    DagsterEventType,
    RunRequest,
    asset,
    asset_sensor,
    build_sensor_context,
    define_asset_job,
    evaluate_automation_conditions,
)

from shadow_dagster.dagster.critical import guard_assets
from shadow_dagster.dagster.io_manager import ShadowIOManager
from shadow_dagster.dagster.reuse import shadow_reusable
from shadow_dagster.dagster.shadow_runner import (
    RUNNER_JOB_NAME,
    execute_shadow_request,
    shadow_request,
)
from shadow_dagster.dagster.shadow_job import shadow_job
from shadow_dagster.store.outputs import ShadowOutputStore
from shadow_dagster.tags import CRITICAL_TAG, PREDICTION_TAG, REUSED_FROM, SHADOW_TAG, is_shadow_run

NONCRIT = {CRITICAL_TAG: "false"}


class Project:
    """A raw -> summary (non-critical, held at a gate in shadow runs) -> published (critical, eager
    automation) project, with an asset sensor on summary."""

    def __init__(self, tmp_path, partitioned: bool = False):
        self.entered, self.release = threading.Event(), threading.Event()
        self.release.set()
        self.calls = []
        parts = DailyPartitionsDefinition(start_date="2026-01-01") if partitioned else None
        project = self

        @asset(code_version="1", partitions_def=parts)
        def raw() -> list:
            return [1, 2, 3]

        @asset(code_version="1", op_tags=NONCRIT, partitions_def=parts)
        @shadow_reusable
        def summary(context, raw: list) -> dict:
            project.calls.append("shadow" if is_shadow_run(context.run.tags) else "live")
            if is_shadow_run(context.run.tags):
                project.entered.set()
                assert project.release.wait(60), "the test never released the shadow run"
            return {"n": len(raw), "sum": sum(raw)}

        @asset(code_version="1", partitions_def=parts, automation_condition=AutomationCondition.eager())
        def published(summary: dict) -> int:
            return summary["sum"]

        self.assets = guard_assets([raw, summary, published])
        self.publish = define_asset_job("publish", selection=["published"])

        @asset_sensor(asset_key=AssetKey("summary"), job=self.publish)
        def on_summary(context, event):
            yield RunRequest(run_key=f"{event.run_id}:{event.timestamp}")

        self.sensor = on_summary
        self.live, self.shadow = tmp_path / "live", tmp_path / "shadow"
        self.url = f"sqlite:///{tmp_path / 'outputs.db'}"
        self.defs = Definitions(assets=self.assets, jobs=[shadow_job(self.assets), self.publish],
                                sensors=[on_summary], resources={"io_manager": ShadowIOManager(
                                    base_dir=str(self.live), shadow_dir=str(self.shadow), store_url=self.url)})

    def materialize(self, instance, selection, partition_key=None):
        job = self.defs.resolve_implicit_global_asset_job_def()
        return job.execute_in_process(instance=instance, asset_selection=[AssetKey(k) for k in selection],
                                      partition_key=partition_key)

    def request(self, assets, partition_key=None, prediction="p1"):
        return shadow_request(assets, partition_key, prediction_id=prediction)

    def shadow_in_thread(self, instance, request):
        self.release.clear()
        self.entered.clear()
        out = {}
        thread = threading.Thread(target=lambda: out.update(r=execute_shadow_request(
            self.defs, request, instance, raise_on_error=False)))
        thread.start()
        assert self.entered.wait(60), "the shadow run never reached summary's body"
        return thread, out


def live_side(project, instance, sensor_cursor, automation_cursor) -> dict:
    """What live automation and the live catalog see of summary now."""
    latest = instance.get_latest_materialization_event(AssetKey("summary"))
    record = instance.get_asset_records([AssetKey("summary")])[0].asset_entry
    ctx = build_sensor_context(instance=instance, cursor=sensor_cursor, repository_def=project.defs.get_repository_def())
    sensor_requests = project.sensor.evaluate_tick(ctx).run_requests
    automation = evaluate_automation_conditions(defs=project.defs, instance=instance, cursor=automation_cursor)
    return {"latest_run": latest.run_id, "last_run_id": record.last_run_id,
            "sensor_requests": len(sensor_requests), "automation_requested": automation.total_requested}


def shadow_asset_events(instance, run_id) -> list:
    """Every asset event of any kind the live instance holds for run `run_id`."""
    kinds = (DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
             DagsterEventType.ASSET_FAILED_TO_MATERIALIZE, DagsterEventType.ASSET_OBSERVATION)
    return instance.all_logs(run_id, of_type=set(kinds))


def test_no_shadow_event_reaches_the_live_side_while_the_shadow_run_runs(instance, tmp_path):
    project = Project(tmp_path)
    live = project.materialize(instance, ["raw", "summary", "published"])
    ctx = build_sensor_context(instance=instance, repository_def=project.defs.get_repository_def())
    sensor_cursor = project.sensor.evaluate_tick(ctx).cursor
    automation_cursor = evaluate_automation_conditions(defs=project.defs, instance=instance).cursor
    quiet = {"latest_run": live.run_id, "last_run_id": live.run_id, "sensor_requests": 0, "automation_requested": 0}
    assert live_side(project, instance, sensor_cursor, automation_cursor) == quiet
    assert len(shadow_asset_events(instance, live.run_id)) == 6   # the check sees a live run's events

    thread, out = project.shadow_in_thread(instance, project.request(["summary"]))
    try:
        (shadow_run,) = [r for r in instance.get_runs() if is_shadow_run(r.tags)]
        assert shadow_run.job_name == RUNNER_JOB_NAME and not shadow_run.is_finished
        assert live_side(project, instance, sensor_cursor, automation_cursor) == quiet   # while it runs
        assert shadow_asset_events(instance, shadow_run.run_id) == []
    finally:
        project.release.set()
        thread.join()
    result = out["r"]
    assert result.success and project.calls == ["live", "shadow"]
    assert live_side(project, instance, sensor_cursor, automation_cursor) == quiet       # after it ended
    assert shadow_asset_events(instance, result.run_id) == []
    assert instance.get_run_by_id(result.run_id).is_finished                        # inspectable
    (row,) = ShadowOutputStore(project.shadow, project.url).list(run_id=result.run_id)
    assert row.asset_key == "summary" and not (project.live / "summary").stat().st_size == 0

    # the live run reuses it: the live materialization names the shadow run
    again = project.materialize(instance, ["summary"])
    mat = again.asset_materializations_for_node("summary")[0]
    assert mat.metadata[REUSED_FROM].value == result.run_id and project.calls == ["live", "shadow"]


def test_an_input_rematerialised_during_the_shadow_run_makes_its_output_unreusable(instance, tmp_path):
    project = Project(tmp_path)
    project.materialize(instance, ["raw", "summary"])
    thread, out = project.shadow_in_thread(instance, project.request(["summary"]))
    try:
        project.materialize(instance, ["raw"])        # the live input moves while the shadow step reads it
    finally:
        project.release.set()
        thread.join()
    assert out["r"].success
    store = ShadowOutputStore(project.shadow, project.url)
    assert store.list(run_id=out["r"].run_id) == []   # kept as scratch only: no provenance key
    project.materialize(instance, ["summary"])
    assert project.calls == ["live", "shadow", "live"]


def test_a_chain_in_one_shadow_run_is_reused_step_by_step(instance, tmp_path):
    """summary and a non-critical downstream in one shadow run: the live run reuses summary, and the
    downstream then keys as it did in the shadow run (by summary's provenance key)."""
    calls = []

    @asset(code_version="1")
    def raw() -> list:
        return [1, 2, 3]

    @asset(code_version="1", op_tags=NONCRIT)
    @shadow_reusable
    def summary(raw: list) -> dict:
        calls.append("summary")
        return {"sum": sum(raw)}

    @asset(code_version="1", op_tags=NONCRIT)
    @shadow_reusable
    def doubled(summary: dict) -> int:
        calls.append("doubled")
        return summary["sum"] * 2

    assets = guard_assets([raw, summary, doubled])
    defs = Definitions(assets=assets, jobs=[shadow_job(assets)], resources={"io_manager": ShadowIOManager(
        base_dir=str(tmp_path / "live"), shadow_dir=str(tmp_path / "shadow"), store_url=f"sqlite:///{tmp_path}/o.db")})
    job = defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(instance=instance, asset_selection=[AssetKey("raw")])
    shadow = execute_shadow_request(defs, shadow_request(["summary", "doubled"], prediction_id="chain"), instance)
    assert shadow.success and calls == ["summary", "doubled"]
    live = job.execute_in_process(instance=instance, asset_selection=[AssetKey("summary"), AssetKey("doubled")])
    assert calls == ["summary", "doubled"]                  # both reused, neither recomputed
    for node in ("summary", "doubled"):
        assert live.asset_materializations_for_node(node)[0].metadata[REUSED_FROM].value == shadow.run_id
    assert shadow_asset_events(instance, shadow.run_id) == []


def test_a_partitioned_shadow_run_is_reused_by_the_live_partition_run(instance, tmp_path):
    project = Project(tmp_path, partitioned=True)
    for day in ("2026-01-01", "2026-01-02"):
        project.materialize(instance, ["raw"], partition_key=day)
    shadow = execute_shadow_request(project.defs, project.request(["summary"], "2026-01-02"), instance)
    assert shadow.success and project.calls == ["shadow"]
    assert shadow_asset_events(instance, shadow.run_id) == []
    other = project.materialize(instance, ["summary"], partition_key="2026-01-01")   # another partition: computes
    assert REUSED_FROM not in other.asset_materializations_for_node("summary")[0].metadata
    live = project.materialize(instance, ["summary"], partition_key="2026-01-02")
    assert live.asset_materializations_for_node("summary")[0].metadata[REUSED_FROM].value == shadow.run_id
    assert project.calls == ["shadow", "live"]


@pytest.mark.parametrize("case", ["not a shadow run", "critical asset"])
def test_the_runner_refuses_what_it_may_not_execute(instance, tmp_path, case):
    project = Project(tmp_path)
    project.materialize(instance, ["raw"])
    request = project.request(["published"] if case == "critical asset" else ["summary"])
    if case == "not a shadow run":
        request = RunRequest(job_name=RUNNER_JOB_NAME, run_config=request.run_config, tags={})
    result = execute_shadow_request(project.defs, request, instance, raise_on_error=False)
    assert not result.success and project.calls == []
    failure = [e for e in result.all_events if e.is_step_failure][0].step_failure_data.error.message
    assert ("only in shadow runs" if case == "not a shadow run" else "not pre-executable") in failure
    assert not (project.live / "published").exists()


def test_a_shadow_tagged_run_with_live_asset_events_is_never_deleted_by_hand(instance, tmp_path):
    """A run tagged as shadow that wrote asset events into the live instance (the shadow asset job
    launched by hand, not the runner) is left alone: deleting it would leave Dagster's asset index
    pointing at a deleted run, and shadow-dagster never writes Dagster's tables to repair that."""
    from shadow_dagster.dagster.purge import purge_shadow_run

    project = Project(tmp_path)
    project.materialize(instance, ["raw"])
    by_hand = project.defs.resolve_job_def("__shadow_dagster_shadow_job").execute_in_process(
        instance=instance, asset_selection=[AssetKey("summary")], tags={SHADOW_TAG: "true"})
    result = purge_shadow_run(instance, by_hand.run_id)
    assert not result.purged and result.asset_keys == ("summary",) and "live instance" in result.reason
    assert instance.get_run_by_id(by_hand.run_id) is not None


def test_expired_shadow_runs_are_found_oldest_first_across_pages(instance):
    """Runs kept for good (hits under purge="misses") never hide older expired ones behind a page."""
    import time

    from dagster import DagsterRun, DagsterRunStatus

    from shadow_dagster.dagster.rollback import expired_shadow_runs

    ids = []
    for i in range(7):
        run = instance.add_run(DagsterRun(job_name=RUNNER_JOB_NAME, run_id=f"shadow-{i}",
                                          tags={SHADOW_TAG: "true", PREDICTION_TAG: f"p{i}"},
                                          status=DagsterRunStatus.SUCCESS))
        ids.append(run.run_id)
    instance.add_run(DagsterRun(job_name=RUNNER_JOB_NAME, run_id="live-0", status=DagsterRunStatus.SUCCESS))
    instance.add_run(DagsterRun(job_name=RUNNER_JOB_NAME, run_id="shadow-running", tags={SHADOW_TAG: "true"},
                                status=DagsterRunStatus.STARTED))
    found = [r.run_id for r in expired_shadow_runs(instance, time.time() + 1, limit=3, pages=5)]
    assert found == ids                                   # every finished shadow run, oldest first
    assert [r.run_id for r in expired_shadow_runs(instance, time.time() + 1, limit=3, pages=2)] == ids[:6]
    assert expired_shadow_runs(instance, time.time() - 3600) == []      # none finished an hour ago


def test_the_runner_refuses_critical_assets_of_any_job_named_in_its_config(instance, tmp_path):
    """Run config can name another asset job (the launchpad): its critical assets are still refused,
    before any body runs."""
    project = Project(tmp_path)
    project.materialize(instance, ["raw"])
    request = project.request(["published"])
    request.run_config["ops"]["execute_predicted_assets"]["config"]["asset_job"] = "publish"
    result = execute_shadow_request(project.defs, request, instance, raise_on_error=False)
    failure = [e for e in result.all_events if e.is_step_failure][0].step_failure_data.error.message
    assert not result.success and "critical" in failure and not (project.live / "published").exists()


def test_two_shadow_runs_with_different_bytes_under_one_key_never_mix(instance, tmp_path):
    """A step that is not deterministic makes different bytes under one provenance key in two shadow
    runs: a downstream shadow output made from the first never stands in for one made from the
    second (pins carry the content hash, not only the key)."""
    import itertools

    counter = itertools.count()

    @asset(code_version="1")
    def seed() -> int:
        return 1

    @asset(code_version="1", op_tags=NONCRIT)
    @shadow_reusable
    def sample(seed: int) -> int:
        return seed + next(counter)          # differs on every compute

    @asset(code_version="1", op_tags=NONCRIT)
    @shadow_reusable
    def derived(sample: int) -> int:
        return sample * 10

    assets = guard_assets([seed, sample, derived])
    from dagster import Definitions as Defs

    defs = Defs(assets=assets, jobs=[shadow_job(assets)], resources={"io_manager": ShadowIOManager(
        base_dir=str(tmp_path / "live"), shadow_dir=str(tmp_path / "shadow"), store_url=f"sqlite:///{tmp_path}/o.db")})
    job = defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(instance=instance, asset_selection=[AssetKey("seed")])

    def shadow(keys, pid):
        assert execute_shadow_request(defs, shadow_request(keys, prediction_id=pid), instance).success

    shadow(["sample", "derived"], "first")     # sample = 1, derived = 10
    shadow(["sample"], "second")               # sample = 2 under the same key: the stored output now
    live = job.execute_in_process(instance=instance, asset_selection=[AssetKey("sample"), AssetKey("derived")])
    sample_value, derived_value = live.output_for_node("sample"), live.output_for_node("derived")
    assert derived_value == sample_value * 10, (sample_value, derived_value)


def test_a_self_dependent_asset_is_reused(instance, tmp_path):
    """An asset reading its own previous partition: the shadow run snapshots that input too."""
    from dagster import AssetIn, TimeWindowPartitionMapping

    days = DailyPartitionsDefinition(start_date="2026-01-01")
    calls = []

    @asset(code_version="1", op_tags=NONCRIT, partitions_def=days,
           ins={"cum": AssetIn(partition_mapping=TimeWindowPartitionMapping(start_offset=-1, end_offset=-1))})
    @shadow_reusable
    def cum(context, cum) -> int:
        calls.append(context.partition_key)
        return (cum or 0) + 1

    assets = guard_assets([cum])
    from dagster import Definitions as Defs

    defs = Defs(assets=assets, jobs=[shadow_job(assets)], resources={"io_manager": ShadowIOManager(
        base_dir=str(tmp_path / "live"), shadow_dir=str(tmp_path / "shadow"), store_url=f"sqlite:///{tmp_path}/o.db")})
    job = defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(instance=instance, asset_selection=[AssetKey("cum")], partition_key="2026-01-01")
    shadow = execute_shadow_request(defs, shadow_request(["cum"], "2026-01-02", prediction_id="self"), instance)
    assert shadow.success
    live = job.execute_in_process(instance=instance, asset_selection=[AssetKey("cum")], partition_key="2026-01-02")
    assert live.asset_materializations_for_node("cum")[0].metadata[REUSED_FROM].value == shadow.run_id
    assert calls == ["2026-01-01", "2026-01-02"] and live.output_for_node("cum") == 2


def test_a_shadow_run_no_tick_settled_is_deleted_after_retention_as_a_miss(instance, tmp_path):
    """A finished shadow run without an outcome, older than the settling window (the sensor was
    stopped, or it outlived 2 x ttl_s in flight), is recorded as a miss and deleted."""
    import time

    from dagster import DagsterRun, DagsterRunStatus

    from shadow_dagster.dagster.rollback import resolve_shadow_runs
    from shadow_dagster.store.outcomes import read_outcomes
    from shadow_dagster.tags import PREDICTED_AT_TAG
    from shadow_dagster.store.signal_store import SignalStore

    store = SignalStore(f"sqlite:///{tmp_path / 'signals.db'}")
    instance.add_run(DagsterRun(job_name=RUNNER_JOB_NAME, run_id="orphan", status=DagsterRunStatus.SUCCESS,
                                tags={SHADOW_TAG: "true", PREDICTION_TAG: "p-orphan"}))
    later = time.time() + 10
    assert resolve_shadow_runs(instance, store, None, ttl_s=1, retention_s=0, now=later) == []
    assert instance.get_run_by_id("orphan") is None
    stages = sorted(o.stage for o in read_outcomes(store) if o.prediction_id == "p-orphan")
    assert stages == ["miss", "purged"]
    miss = [o for o in read_outcomes(store) if o.stage == "miss"][0]
    assert "never settled" in miss.reason and miss.shadow_run_id == "orphan"
    # inside the settling window it is left for the sensor to settle
    instance.add_run(DagsterRun(job_name=RUNNER_JOB_NAME, run_id="recent", status=DagsterRunStatus.SUCCESS,
                                tags={SHADOW_TAG: "true", PREDICTION_TAG: "p-recent",
                                      PREDICTED_AT_TAG: f"{time.time():.3f}"}))
    resolve_shadow_runs(instance, store, None, ttl_s=3600, retention_s=0, now=time.time() + 10)
    assert instance.get_run_by_id("recent") is not None
