"""Runs a running schedule will launch: planned before they exist, pre-executed, reused, settled.

The test's schedule ticks every minute, so its next tick is always within the sensor's schedule
horizon whatever the clock says; the test then launches the run that tick requests itself (with
the tags Dagster's scheduler gives it), so no wall-clock race decides anything.
"""


import pickle

import dagster as dg
import pytest

from shadow_dagster.dagster.critical import guard_assets
from shadow_dagster.dagster.fingerprints import fingerprint_path
from shadow_dagster.dagster.ingest import ingest
from shadow_dagster.dagster.io_manager import ShadowIOManager
from shadow_dagster.dagster.rollback import resolve_shadow_runs
from shadow_dagster.store.outcomes import read_outcomes
from shadow_dagster.tags import SCHEDULED_FOR_TAG
from shadow_dagster.dagster.scheduled import running_schedules, upcoming_runs
from shadow_dagster.dagster.shadow_runner import execute_shadow_request, request_assets
from shadow_dagster import PrepareConfig, ShadowStorage, SpeculationConfig
from shadow_dagster.dagster.shadow_job import shadow_job
from shadow_dagster.dagster.speculative_sensor import build_speculative_sensor
from shadow_dagster.fingerprint import Fingerprint
from shadow_dagster.signals.cases import cases_from_signals
from shadow_dagster.signals.instances import SCHEDULE_TAG, SCHEDULED_AT_TAG
from shadow_dagster.signals.instances import tick_iso as iso_of
from shadow_dagster.store.outputs import ShadowOutputStore
from shadow_dagster.store.signal_store import SignalStore
from shadow_dagster.tags import CRITICAL_TAG, PARENT_TAG, REUSED_FROM

DAYS = dg.StaticPartitionsDefinition([f"d{i}" for i in range(12)])


class World:
    """`load` (critical) writes raw[day]; the `nightly` job's non-critical `stats` reads it, launched
    by `nightly_schedule`, which requests the partition in `self.next` (None: skips)."""

    def __init__(self, tmp_path):
        self.calls, self.next = [], {"partition": None}
        calls, nxt = self.calls, self.next

        @dg.asset(partitions_def=DAYS, code_version="1")
        def raw(context: dg.AssetExecutionContext) -> list:
            return [int(context.partition_key[1:]), 2, 3]

        @dg.asset(partitions_def=DAYS, code_version="1", op_tags={CRITICAL_TAG: "false"})
        def stats(context: dg.AssetExecutionContext, raw: list) -> dict:
            calls.append(context.run.run_id)
            return {"sum": sum(raw)}

        nightly = dg.define_asset_job("nightly", selection=["stats"], partitions_def=DAYS)

        def request(context):
            if nxt["partition"] is None:
                return dg.SkipReason("nothing due")
            return dg.RunRequest(partition_key=nxt["partition"])

        schedule = dg.ScheduleDefinition(name="nightly_schedule", cron_schedule="* * * * *", job=nightly,
                                         execution_fn=request, default_status=dg.DefaultScheduleStatus.RUNNING)
        self.url = f"sqlite:///{tmp_path / 'store.db'}"
        self.live, self.shadow = tmp_path / "live", tmp_path / "shadow"
        assets = guard_assets([raw, stats])
        self.sensor = build_speculative_sensor(
            job=shadow_job(assets),
            storage=ShadowStorage(signal_store_url=self.url, shadow_dir=str(self.shadow), output_store_url=self.url),
            config=SpeculationConfig(launch_overhead_s=0.0, report_interval_s=None, chain_gap_s=0.0,
                                     prepare=PrepareConfig(prefetch=False, warmup=False)))
        self.defs = dg.Definitions(
            assets=assets, jobs=[dg.define_asset_job("load", selection=["raw"], partitions_def=DAYS), nightly],
            schedules=[schedule], sensors=[self.sensor],
            resources={"io_manager": ShadowIOManager(base_dir=str(self.live), shadow_dir=str(self.shadow),
                                                     store_url=self.url)})
        self.repo = self.defs.get_repository_def()

    def run(self, instance, job, partition, tags=None):
        result = self.defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition,
                                                                   tags=tags or {})
        assert result.success
        return result

    def load(self, instance, partition, chained: bool):
        return self.run(instance, "load", partition, {} if chained else {"dagster/backfill": "initial"})

    def scheduled(self, instance, partition, tick_iso):
        """The run the schedule's tick at `tick_iso` launches, with the tags Dagster's scheduler sets."""
        return self.run(instance, "nightly", partition, {SCHEDULE_TAG: "nightly_schedule", SCHEDULED_AT_TAG: tick_iso})

    def seed(self, instance, *, with_load: bool) -> Fingerprint:
        """Eight past days: `load` then the scheduled `nightly` (one instance, workflow `load`), or
        the scheduled `nightly` alone on data a backfill loaded (workflow `nightly`)."""
        for i in range(8):
            self.load(instance, f"d{i}", with_load)
        if not with_load:
            self.calls.clear()
        for i in range(8):
            self.scheduled(instance, f"d{i}", f"2026-01-0{i + 1}T00:00:00+00:00")
        store = SignalStore(self.url)
        ingest(instance, store, resolution_ms=1)
        workflow = "load" if with_load else "nightly"
        cases = [c for c in cases_from_signals(store.signals()) if c.workflow == workflow]
        assert len(cases) == 8 and cases[0].activities[-1] == "nightly/stats"
        fp = Fingerprint.fit(cases, window_days=None)
        fingerprint_path(workflow).parent.mkdir(parents=True, exist_ok=True)
        fp.save(fingerprint_path(workflow))
        store.dispose()
        self.calls.clear()
        return fp

    def tick(self, instance, cursor=None):
        return self.sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                                 repository_def=self.repo))


@pytest.fixture
def world(tmp_path, instance):
    return World(tmp_path)


def test_only_running_schedules_of_pre_executable_jobs_are_upcoming(world, instance):
    import time

    assert [s.name for s in running_schedules(instance, world.repo)] == ["nightly_schedule"]
    notes = []
    assert upcoming_runs(instance, world.repo, time.time(), 900, {"nightly"}, notes) == []   # it skips
    world.next["partition"] = "d3"
    (up,) = upcoming_runs(instance, world.repo, time.time(), 900, {"nightly"}, notes)
    assert up.job_name == "nightly" and up.partition == "d3" and 0 < up.tick_s - time.time() <= 60
    assert up.run_tags[SCHEDULED_AT_TAG] == up.tick_iso and up.key == f"d3@nightly_schedule#{up.tick_iso}"
    assert upcoming_runs(instance, world.repo, time.time(), 900, {"load"}, notes) == []
    assert upcoming_runs(instance, world.repo, up.tick_s - 59.5, 30, {"nightly"}, notes) == []  # beyond horizon


@pytest.mark.parametrize("with_load", [True, False], ids=["joins-the-load-instance", "starts-its-own"])
def test_a_scheduled_runs_step_is_pre_executed_before_the_run_exists_and_reused(world, instance, with_load):
    world.seed(instance, with_load=with_load)
    today = world.load(instance, "d9", with_load)     # today's data: the scheduled run will read it
    world.calls.clear()
    world.next["partition"] = "d9"
    first = world.tick(instance)
    (req,) = first.run_requests
    assert request_assets(req) == ["stats"] and req.partition_key is None
    tick_iso = iso_of(float(req.tags[SCHEDULED_FOR_TAG]))   # the tick the shadow run was planned for
    live_before = {p.name: p.read_bytes() for p in world.live.rglob("*") if p.is_file()}
    shadow = execute_shadow_request(world.defs, req, instance)
    assert shadow.success and world.calls == [shadow.run_id]
    assert {p.name: p.read_bytes() for p in world.live.rglob("*") if p.is_file()} == live_before
    assert world.tick(instance, first.cursor).run_requests == []        # launched once, and not settled yet
    assert not [o for o in read_outcomes(SignalStore(world.url)) if o.stage in ("hit", "miss")]

    world.next["partition"] = None
    live = world.scheduled(instance, "d9", tick_iso)  # the tick comes: the run the sensor planned for
    mat = live.asset_materializations_for_node("stats")[0]
    assert mat.metadata[REUSED_FROM].value == shadow.run_id and world.calls == [shadow.run_id]
    assert pickle.loads((world.live / "stats" / "d9").read_bytes()) == {"sum": 14}
    world.tick(instance, first.cursor)
    (hit,) = [o for o in read_outcomes(SignalStore(world.url)) if o.stage in ("hit", "miss")]
    assert hit.stage == "hit" and hit.shadow_run_id == shadow.run_id
    # the instance the shadow run was planned for is the one the scheduled run joined or started
    assert req.tags[PARENT_TAG] == (f"d9@{today.run_id}" if with_load else f"d9@nightly_schedule#{tick_iso}")


def test_a_schedule_that_launches_nothing_settles_as_a_miss(world, instance):
    world.seed(instance, with_load=False)
    world.load(instance, "d9", False)
    world.next["partition"] = "d9"
    (req,) = world.tick(instance).run_requests
    shadow = execute_shadow_request(world.defs, req, instance)
    assert shadow.success
    tick = float(req.tags[SCHEDULED_FOR_TAG])
    store, outputs = SignalStore(world.url), ShadowOutputStore(str(world.shadow), world.url)
    assert resolve_shadow_runs(instance, store, outputs, chain_gap_s=60, now=tick + 30) == []   # still expected
    (res,) = resolve_shadow_runs(instance, store, outputs, chain_gap_s=60, now=tick + 61)
    assert res.outcome == "miss" and "launched no run within 60s of its tick" in res.reason
    assert res.outputs_deleted >= 1
