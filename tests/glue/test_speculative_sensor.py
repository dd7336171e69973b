"""End to end on a real Dagster instance: history -> fingerprint -> live run -> sensor -> shadow run
-> reuse (hit), and a wrong prediction -> rollback (miss, outputs deleted, live results unchanged)."""

from __future__ import annotations

import pickle
import threading
import time

import pytest
from support.chain_history import seed_chain_history
from dagster import AssetKey, Definitions, asset, build_sensor_context, define_asset_job

from shadow_dagster.dagster.critical import guard_assets
from shadow_dagster.dagster.fingerprints import fingerprint_path
from shadow_dagster.dagster.io_manager import ShadowIOManager
from shadow_dagster.dagster.purge import asset_keys_of_run
from shadow_dagster.dagster.reuse import shadow_reusable
from shadow_dagster.store.outcomes import read_outcomes
from shadow_dagster.dagster.shadow_job import shadow_job
from shadow_dagster.dagster.speculative_sensor import SHADOW_JOB_NAME, build_speculative_sensor
from shadow_dagster import ShadowStorage, SpeculationConfig
from shadow_dagster.fingerprint import Fingerprint
from shadow_dagster.store.outputs import DELETED, ShadowOutputStore
from shadow_dagster.speculation.planner import prediction_id
from shadow_dagster.tags import (CRITICAL_TAG, PARENT_TAG, PREDICTION_TAG, PROBABILITY_TAG, REUSED_FROM,
                                 SHADOW_TAG, WORKFLOW_TAG)

NONCRIT = {CRITICAL_TAG: "false"}


class World:
    def __init__(self, tmp_path):
        self.gate = threading.Event()
        self.gate.set()
        self.calls = {"stats_a": 0, "stats_b": 0}
        self.fail = []
        gate, calls, fail = self.gate, self.calls, self.fail

        @asset(code_version="1")
        def raw() -> list:
            return [3, 1, 2]

        @asset(code_version="1")
        def gate_step(raw: list) -> int:          # critical and slow in real life: the live run waits here
            gate.wait(60)
            if fail:
                raise RuntimeError("live failure injected by the test")
            return len(raw)

        @asset(code_version="1", op_tags=NONCRIT)
        @shadow_reusable
        def stats_a(raw: list) -> dict:
            calls["stats_a"] += 1
            return {"sum": sum(raw), "max": max(raw)}

        @asset(code_version="1", op_tags=NONCRIT)
        @shadow_reusable
        def stats_b(raw: list) -> dict:
            calls["stats_b"] += 1
            return {"min": min(raw)}

        self.live, self.shadow = tmp_path / "live", tmp_path / "shadow"
        self.url = f"sqlite:///{tmp_path / 'store.db'}"
        assets = guard_assets([raw, gate_step, stats_a, stats_b])
        jobs = [define_asset_job("ingest", selection=["raw", "gate_step"]),
                define_asset_job("left", selection=["stats_a"]),
                define_asset_job("right", selection=["stats_b"])]
        self.sjob = shadow_job(assets)
        self.storage = ShadowStorage(signal_store_url=self.url, shadow_dir=str(self.shadow), output_store_url=self.url)
        self.sensor = build_speculative_sensor(job=self.sjob, storage=self.storage, config=SpeculationConfig(
            divergence_slack=0, launch_overhead_s=0.0, report_interval_s=0))
        from shadow_dagster.dagster.speculation_report import build_speculation_report

        report = build_speculation_report(storage=self.storage).spec   # the sensor logs it
        self.defs = Definitions(assets=[*assets, report], jobs=[*jobs, self.sjob], sensors=[self.sensor], resources={
            "io_manager": ShadowIOManager(base_dir=str(self.live), shadow_dir=str(self.shadow), store_url=self.url)})
        self.repo = self.defs.get_repository_def()

    def run(self, instance, job, key, **kw):
        return self.defs.resolve_job_def(job).execute_in_process(instance=instance, tags={WORKFLOW_TAG: key}, **kw)

    def seed(self, instance):
        store, _ = seed_chain_history(self.run, instance, self.url)
        self.calls.update(stats_a=0, stats_b=0)
        return store, Fingerprint.load(fingerprint_path("ingest"))

    def start_live(self, instance, key):
        """A real live run of `ingest` held at its critical gate step (STARTED, step in progress),
        returned once the gate step has run longer than history ever took to reach the next step.

        From then on the sensor's plan no longer depends on when it ticks: the running step has
        overrun every interval the fingerprint saw, so the next step's ETA is unknown (the sensor
        counts that as enough time), however late a loaded machine lets the tick run. Ticked sooner,
        the soonest ETA (10 % quantile of the time left) shrinks as the gate step runs and, past a
        point that depends on the machine's speed, leaves no time to save: no launch."""
        self.gate.clear()
        result = {}
        thread = threading.Thread(target=lambda: result.update(
            r=self.run(instance, "ingest", key, raise_on_error=False)))
        thread.start()
        timing = Fingerprint.load(fingerprint_path("ingest")).timing
        dists = [d for (a, _), d in timing.pair.items() if a == "ingest/gate_step"]
        overrun = max(float(d.quantiles[-1]) for d in [*dists, timing.interval["ingest/gate_step"]])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = [r for r in instance.get_runs() if r.tags.get(WORKFLOW_TAG) == key]
            gate = [s for s in (instance.get_run_step_stats(runs[0].run_id) if runs else ())
                    if s.step_key == "gate_step" and s.start_time is not None]
            if gate and time.time() - gate[0].start_time > overrun:
                return thread, result
            time.sleep(0.05)
        self.gate.set()
        raise AssertionError("live run never reached its gate step")

    def tick(self, instance, cursor=None):
        ctx = build_sensor_context(instance=instance, cursor=cursor, repository_def=self.repo)
        return self.sensor.evaluate_tick(ctx)

    def run_shadow(self, instance, request):
        from shadow_dagster.dagster.shadow_runner import execute_shadow_request

        return execute_shadow_request(self.defs, request, instance)


@pytest.fixture
def world(tmp_path, instance):
    return World(tmp_path)


def test_shadow_job_holds_only_non_critical_assets(world):
    job = world.defs.resolve_job_def(SHADOW_JOB_NAME)
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {"stats_a", "stats_b"}
    with pytest.raises(ValueError, match="non-critical"):
        shadow_job([world.defs.get_assets_def("raw")])


def test_speculation_definitions_merge(world):
    from dagster import Definitions, DefaultSensorStatus

    from shadow_dagster.dagster.speculative_sensor import (
        REPORT_JOB, SPECULATIVE_SENSOR_NAME, speculation_definitions,
    )

    assets = [world.defs.get_assets_def(k) for k in ("raw", "gate_step", "stats_a", "stats_b")]
    merged = Definitions.merge(Definitions(assets=assets), speculation_definitions(assets, storage=world.storage))
    job = merged.resolve_job_def(SHADOW_JOB_NAME)
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {"stats_a", "stats_b"}
    sensor_def = merged.get_sensor_def(SPECULATIVE_SENSOR_NAME)
    assert sensor_def.default_status == DefaultSensorStatus.RUNNING
    assert not merged.resolve_assets_def("speculation_report").is_executable      # reported by REPORT_JOB
    assert merged.resolve_job_def(REPORT_JOB)
    with pytest.raises(TypeError):
        speculation_definitions(assets, job_name="x")


def test_predict_launch_and_reuse_end_to_end(world, instance):
    store, fp = world.seed(instance)
    thread, live = world.start_live(instance, "live-1")
    try:
        first = world.tick(instance)
    finally:
        world.gate.set()
    thread.join()
    assert live["r"].success
    reqs = first.run_requests
    assert len(reqs) == 1, first.skip_message
    req = reqs[0]
    pid = prediction_id("live-1", "left/stats_a", fp.content_hash)
    from shadow_dagster.dagster.shadow_runner import RUNNER_JOB_NAME, request_assets

    assert req.job_name == RUNNER_JOB_NAME and request_assets(req) == ["stats_a"]   # critical assets never selected
    assert req.run_key == "shadow-" + pid
    assert req.tags[SHADOW_TAG] == "true" and req.tags[PARENT_TAG] == "live-1"
    assert req.tags[PREDICTION_TAG] == pid and 0.5 < float(req.tags[PROBABILITY_TAG]) <= 1
    assert req.tags[WORKFLOW_TAG] != "live-1"                    # never joins the live case
    # the tick logs the report: per live instance, what was predicted and decided, and why
    report = live_instances_report(first)
    assert "### `live-1` (ingest)" in report
    assert row_of(report, "left/stats_a")[3] == "pre-executed"
    assert row_of(report, "left/stats_a")[4].startswith("launched a shadow run: expected saving")
    declined = row_of(report, "right/stats_b")
    assert declined[3] == "not pre-executed" and declined[4].startswith("policy: no launch:"), declined
    assert float(declined[1]) + float(row_of(report, "left/stats_a")[1]) <= 1.0 + 1e-6
    # a repeated tick launches nothing twice
    second = world.tick(instance, first.cursor)
    assert second.run_requests == []
    # the shadow run executes for real; a tick after it still launches nothing
    before = snapshot(world.live)
    shadow = world.run_shadow(instance, req)
    assert shadow.success and world.calls["stats_a"] == 1
    assert world.tick(instance, second.cursor).run_requests == []
    assert snapshot(world.live) == before                        # isolation: live storage untouched
    # the live instance continues down the predicted branch and reuses the shadow output
    result = world.run(instance, "left", "live-1")
    mat = result.asset_materializations_for_node("stats_a")[0]
    assert mat.metadata[REUSED_FROM].value == shadow.run_id
    assert world.calls["stats_a"] == 1                           # no second compute
    assert pickle.loads((world.live / "stats_a").read_bytes()) == {"sum": 6, "max": 3}
    # the next tick settles the prediction as a hit, once
    settling = world.tick(instance, second.cursor)
    world.tick(instance, second.cursor)
    outcomes = read_outcomes(store)
    hits = [o for o in outcomes if o.stage == "hit"]
    assert len(hits) == 1 and hits[0].prediction_id == pid and hits[0].shadow_run_id == shadow.run_id
    assert {o.stage for o in outcomes if o.prediction_id == pid} == {"predicted", "launched", "hit"}
    # the settled shadow run stays inspectable for the retention period; it never had an asset event
    # in the live instance: stats_a's history holds the live (reused) materialization only
    assert instance.get_run_by_id(shadow.run_id) is not None
    assert asset_keys_of_run(instance, shadow.run_id) == set()
    expire(world, instance, store)
    assert instance.get_run_by_id(shadow.run_id) is None
    assert {o.stage for o in read_outcomes(store) if o.prediction_id == pid} == {"predicted", "launched", "hit",
                                                                                 "purged"}
    latest = instance.get_latest_materialization_event(AssetKey("stats_a"))
    assert latest.run_id == result.run_id
    assert latest.asset_materialization.metadata[REUSED_FROM].value == shadow.run_id   # provenance kept
    assert shadow.run_id not in {r.run_id for r in instance.fetch_materializations(AssetKey("stats_a"),
                                                                                   limit=100).records}
    assert [o for o in outcomes if o.stage == "predicted" and o.activity == "right/stats_b"]  # declined
    # the tick that settled it logged the report again, with the outcome and the shadow run
    hit_row = row_of(live_instances_report(settling), "left/stats_a")
    assert hit_row[3] == f"pre-executed in [{shadow.run_id[:8]}](/runs/{shadow.run_id})", hit_row
    assert hit_row[5] == f"hit: reused, {hits[0].seconds_saved:.1f} s saved", hit_row
    check_report_and_cli(world, instance, hits=1, misses=0)


def test_wrong_prediction_rolls_back(world, instance):
    store, fp = world.seed(instance)
    thread, live = world.start_live(instance, "live-2")
    try:
        first = world.tick(instance)
    finally:
        world.gate.set()
    thread.join()
    req = first.run_requests[0]
    pid = req.tags[PREDICTION_TAG]
    before = snapshot(world.live)
    shadow = world.run_shadow(instance, req)
    outputs = ShadowOutputStore(world.shadow, world.url)
    made = outputs.list(prediction_id=pid)
    assert made and all(o.path.exists() for o in made)
    # the live instance takes the other branch
    result = world.run(instance, "right", "live-2")
    assert result.success
    world.tick(instance, first.cursor)
    after = outputs.list(prediction_id=pid)
    assert all(o.status == DELETED for o in after) and not any(o.path.exists() for o in made)
    misses = [o for o in read_outcomes(store) if o.stage == "miss"]
    assert len(misses) == 1 and misses[0].prediction_id == pid and misses[0].shadow_run_id == shadow.run_id
    assert misses[0].seconds_wasted >= 0 and "another branch" in misses[0].reason
    # the missed shadow run is kept until the retention period ends; stats_a's catalog entry is the
    # live one from before speculation
    assert instance.get_run_by_id(shadow.run_id).is_finished
    expire(world, instance, store)
    assert instance.get_run_by_id(shadow.run_id) is None
    assert instance.get_latest_materialization_event(AssetKey("stats_a")).run_id != shadow.run_id
    assert second_tick_is_quiet(world, instance, first.cursor, store, pid)
    # live results are those of a run without speculation: stats_b recomputed live, the rest untouched
    assert world.calls == {"stats_a": 1, "stats_b": 1}
    after_live = snapshot(world.live)
    assert pickle.loads(after_live.pop("stats_b")) == {"min": 1}
    before.pop("stats_b")
    assert after_live == before
    check_report_and_cli(world, instance, hits=0, misses=1)


def expire(world, instance, store):
    """What the sensor does once the retention period is over: settled shadow runs are deleted."""
    from shadow_dagster.dagster.rollback import expired_shadow_runs, purge_settled_shadow_runs

    purge_settled_shadow_runs(instance, store, expired_shadow_runs(instance, time.time() + 1))


def live_instances_report(tick) -> str:
    """The `live_instances` markdown of the one report the sensor logged on `tick`."""
    (event,) = [e for e in tick.asset_events if e.asset_key == AssetKey("speculation_report")]
    return event.metadata["live_instances"].value


def row_of(markdown: str, activity: str) -> list[str]:
    """The cells of the report row for `activity`."""
    (row,) = [line for line in markdown.splitlines() if line.startswith(f"| {activity} |")]
    return [c.strip() for c in row.strip("|").split(" | ")]


def second_tick_is_quiet(world, instance, cursor, store, pid) -> bool:
    """A later tick neither relaunches the purged prediction nor writes its outcomes twice."""
    before = [o for o in read_outcomes(store) if o.prediction_id == pid]
    again = world.tick(instance, cursor)
    return (not any(r.tags[PREDICTION_TAG] == pid for r in again.run_requests)
            and [o for o in read_outcomes(store) if o.prediction_id == pid] == before)


def snapshot(root):
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}


def test_live_failure_rolls_back(world, instance):
    store, _ = world.seed(instance)
    thread, live = world.start_live(instance, "live-3")
    try:
        first = world.tick(instance)
        world.fail.append(True)
    finally:
        world.gate.set()
    thread.join()
    assert not live["r"].success
    req = first.run_requests[0]
    world.run_shadow(instance, req)
    outputs = ShadowOutputStore(world.shadow, world.url)
    assert outputs.list(prediction_id=req.tags[PREDICTION_TAG])
    world.tick(instance, first.cursor)
    misses = [o for o in read_outcomes(store) if o.stage == "miss"]
    assert len(misses) == 1 and "failure" in misses[0].reason
    assert all(o.status == DELETED for o in outputs.list(prediction_id=req.tags[PREDICTION_TAG]))


def check_report_and_cli(world, instance, *, hits, misses):
    """The report asset's totals and `shadow list/gc` on the same instance."""
    import json

    from click.testing import CliRunner
    from shadow_dagster.cli.shadow import shadow
    from shadow_dagster.dagster.reported import reporting_job
    from shadow_dagster.dagster.speculation_report import build_speculation_report

    res = reporting_job("report", [build_speculation_report(storage=world.storage)]).execute_in_process(
        instance=instance)
    meta = res.asset_materializations_for_node("speculation_report")[0].metadata
    assert meta["hits"].value == hits and meta["misses"].value == misses
    assert meta["launched"].value == hits + misses and meta["predictions"].value >= hits + misses
    assert 0 < meta["policy_threshold"].value < 1
    assert "| run |" in meta["recent_shadow_runs"].value
    runner = CliRunner()
    out = runner.invoke(shadow, ["list", "--json", "--store-url", world.url])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.splitlines()]
    assert [r["outcome"] for r in rows] == ["hit"] * hits + ["miss"] * misses
    assert all(r["status"] == "purged" for r in rows)            # purged from Dagster, still listed
    out = runner.invoke(shadow, ["gc", "--ttl", "0", "--store-url", world.url, "--shadow-dir", str(world.shadow)])
    assert out.exit_code == 0 and "deleted" in out.output, out.output
    bad = runner.invoke(shadow, ["gc", "--store-url", world.url, "--shadow-dir", str(world.shadow / "nope")])
    assert bad.exit_code != 0 and "does not exist" in bad.output


def test_auto_launch_cap_follows_the_run_launcher(instance):
    """The default launcher starts run workers on this host, next to the live runs: "auto" caps
    launches at one per tick there. Launchers of the Kubernetes, Docker and ECS packages start runs
    on other nodes: no cap."""
    from dagster import DefaultRunLauncher

    from shadow_dagster.dagster.host import REMOTE_LAUNCHER_PACKAGES, runs_on_live_host

    assert isinstance(instance.run_launcher, DefaultRunLauncher) and runs_on_live_host(instance)

    class Elsewhere:   # an instance whose launcher class lives in a remote launcher's package
        run_launcher = type("K8sRunLauncher", (), {"__module__": "dagster_k8s.launcher"})()

    assert "dagster_k8s" in REMOTE_LAUNCHER_PACKAGES and not runs_on_live_host(Elsewhere())


def test_predict_gives_a_running_instance_the_fingerprints_eta(world, instance, monkeypatch):
    """`shadow-dagster predict` on a live instance held at a running step: positive ETA and
    remaining duration, exactly the fingerprint's timing for that prefix and elapsed time; past
    every observed interval it says overdue / unknown instead of a misleading 0.0."""
    import json

    from click.testing import CliRunner

    import shadow_dagster.dagster.live as live
    from shadow_dagster.cli import main
    from shadow_dagster.dagster.live_groups import group_view

    _, fp = world.seed(instance)
    thread, _ = world.start_live(instance, "live-p")
    try:
        run_id = next(r.run_id for r in instance.get_runs() if r.tags.get(WORKFLOW_TAG) == "live-p")
        view = group_view(instance, "live-p")
        start, last, status, _ = view.executed[-1]
        assert last == "ingest/gate_step" and status == "IN_PROGRESS"
        nxt = "left/stats_a"
        until = fp.timing.pair.get((last, nxt)) or fp.timing.interval[last]
        elapsed = float(until.quantiles[0]) / 2          # inside what history saw: the clock is fixed
        monkeypatch.setattr(live, "_now", lambda: start + elapsed)
        runner = CliRunner()
        out = runner.invoke(main, ["predict", run_id, "--json"])
        assert out.exit_code == 0, out.output
        got = json.loads(out.output.strip().splitlines()[-1])
        assert got["prefix"] == view.prefix and got["in_progress"] is True
        assert got["elapsed_seconds"] == pytest.approx(elapsed, abs=1e-6)
        elapsed = got["elapsed_seconds"]
        etas = {s["activity"]: s["eta_seconds"] for s in got["steps"]}
        assert etas[nxt] > 0 and etas[nxt] == pytest.approx(fp.timing.eta(last, nxt, elapsed))
        assert all(etas[a] == pytest.approx(fp.timing.eta(last, a, elapsed)) for a in etas)
        remaining = got["expected_remaining_seconds"]
        assert remaining > 0 and remaining == pytest.approx(fp.timing.expected_remaining(last, elapsed))
        assert got["overdue"] == [] and got["remaining_unknown"] is False
        text = runner.invoke(main, ["predict", run_id]).output
        row = next(line for line in text.splitlines() if line.startswith(nxt))
        assert row.split()[-1] == f"{etas[nxt]:.1f}" and f"expected remaining duration: {remaining:.1f} s" in text

        # waited longer than any past instance: the fingerprint's E[X - e | X > e] has nothing above e
        late = float(max(d.quantiles[-1] for d in fp.timing.interval.values())) * 10 + 10
        monkeypatch.setattr(live, "_now", lambda: start + late)
        got = json.loads(runner.invoke(main, ["predict", run_id, "--json"]).output.strip().splitlines()[-1])
        assert set(got["overdue"]) == {s["activity"] for s in got["steps"]} and got["remaining_unknown"] is True
        text = runner.invoke(main, ["predict", run_id]).output
        row = next(line for line in text.splitlines() if line.startswith(nxt))
        assert row.split()[-1] == "overdue" and "remaining duration: unknown" in text
        assert f"{late:.1f} s since {last} started" in text
    finally:
        world.gate.set()
        thread.join()
