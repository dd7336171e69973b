"""Pre-fetch and pre-allocation on a real Dagster instance: a sensor tick copies the input of a
predicted (critical) step into the prefetch cache and warms its resource; the live run reads through
the cache; stale or tampered copies fall back to live storage; rollback releases and discards."""

from __future__ import annotations

import math
import os
import pickle
import threading
import time
from pathlib import Path

import pytest
from support.chain_history import seed_chain_history
from dagster import Definitions, asset, build_sensor_context, define_asset_job

from shadow_dagster.dagster.critical import guard_assets
from shadow_dagster.dagster.io_manager import PREFETCH_BYTES_META, PREFETCH_HIT_META, ShadowIOManager
from shadow_dagster import PrepareConfig, ShadowStorage, SpeculationConfig
from shadow_dagster.store.outcomes import read_outcomes
from shadow_dagster.dagster.shadow_job import shadow_job
from shadow_dagster.dagster.speculative_sensor import build_speculative_sensor
from shadow_dagster.dagster.warmup import WarmableResource
from shadow_dagster.speculation.isolation import ShadowIsolationError
from shadow_dagster.speculation.prefetch import PrefetchCache
from shadow_dagster.tags import CRITICAL_TAG, WORKFLOW_TAG



class DiskIndex(WarmableResource):
    """Builds an on-disk artifact on first use; warm_up builds it ahead, release deletes it."""

    root: str

    def _log(self, what: str) -> None:
        with open(os.path.join(self.root, "calls.log"), "a") as fh:
            fh.write(what + "\n")

    def warm_up(self) -> None:
        self._log("warm_up")
        Path(self.root, "index.bin").write_bytes(b"index")

    def release(self) -> None:
        self._log("release")
        Path(self.root, "index.bin").unlink(missing_ok=True)

    def was_warm(self) -> bool:
        warm = Path(self.root, "index.bin").exists()
        Path(self.root, "index.bin").write_bytes(b"index")
        return warm


class Broken(WarmableResource):
    def warm_up(self) -> None:
        raise RuntimeError("warehouse refused to resume")


class World:
    def __init__(self, tmp_path, **sensor_kw):
        self.gate = threading.Event()
        self.gate.set()
        self.value = {"raw": list(range(1000))}
        self.seen = {}
        gate, value, seen = self.gate, self.value, self.seen

        @asset(code_version="1")
        def raw() -> list:
            return list(value["raw"])

        @asset(code_version="1")
        def gate_step(raw: list) -> int:          # critical and slow in real life: the live run waits here
            gate.wait(60)
            return len(raw)

        @asset(code_version="1")                  # critical: never pre-executed, but pre-fetched/warmed
        def publish(raw: list, index: DiskIndex, broken: Broken) -> int:
            seen["raw"], seen["warm"] = raw, index.was_warm()
            return sum(raw)

        @asset(code_version="1", op_tags={CRITICAL_TAG: "false"})
        def stats_b(raw: list) -> int:
            return min(raw)

        self.root = tmp_path
        self.live, self.shadow, self.prefetch = tmp_path / "live", tmp_path / "shadow", tmp_path / "prefetch"
        self.res_root = tmp_path / "res"
        self.res_root.mkdir()
        self.url = f"sqlite:///{tmp_path / 'store.db'}"
        assets = guard_assets([raw, gate_step, publish, stats_b])
        jobs = [define_asset_job("ingest", selection=["raw", "gate_step"]),
                define_asset_job("left", selection=["publish"]),
                define_asset_job("right", selection=["stats_b"])]
        sjob = shadow_job(assets)
        options = dict(divergence_slack=0, launch_overhead_s=0.0, prefetch=True)
        options.update(sensor_kw)
        self.sensor = build_speculative_sensor(
            job=sjob, storage=ShadowStorage(signal_store_url=self.url, shadow_dir=str(self.shadow),
                                            output_store_url=self.url),
            config=SpeculationConfig.from_options(options))
        self.defs = Definitions(assets=assets, jobs=[*jobs, sjob], sensors=[self.sensor], resources={
            "io_manager": ShadowIOManager(base_dir=str(self.live), shadow_dir=str(self.shadow), store_url=self.url),
            "index": DiskIndex(root=str(self.res_root)), "broken": Broken()})
        self.repo = self.defs.get_repository_def()
        self.cache = PrefetchCache(self.prefetch)

    def run(self, instance, job, key, **kw):
        return self.defs.resolve_job_def(job).execute_in_process(instance=instance, tags={WORKFLOW_TAG: key}, **kw)

    def seed(self, instance):
        store, _ = seed_chain_history(self.run, instance, self.url)
        (self.res_root / "calls.log").unlink(missing_ok=True)
        (self.res_root / "index.bin").unlink(missing_ok=True)
        return store

    def start_live(self, instance, key):
        """A real live run of `ingest` held at its critical gate step; returns once raw is old enough
        for the cache (its mtime older than the cache's min age)."""
        self.gate.clear()
        result = {}
        thread = threading.Thread(target=lambda: result.update(
            r=self.run(instance, "ingest", key, raise_on_error=False)))
        thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = [r for r in instance.get_runs() if r.tags.get(WORKFLOW_TAG) == key]
            if runs and any(s.step_key == "gate_step" for s in instance.get_run_step_stats(runs[0].run_id)):
                while time.time() - (self.live / "raw").stat().st_mtime < 2 * self.cache.min_age_s:
                    time.sleep(0.05)
                return thread, result
            time.sleep(0.05)
        raise AssertionError("live run never reached its gate step")

    def finish_ingest(self, thread, live):
        self.gate.set()
        thread.join()
        assert live["r"].success

    def tick(self, instance, cursor=None):
        ctx = build_sensor_context(instance=instance, cursor=cursor, repository_def=self.repo)
        return self.sensor.evaluate_tick(ctx)

    def calls(self):
        path = self.res_root / "calls.log"
        return path.read_text().split() if path.exists() else []


def prefetch_hits(result, node="publish"):
    """Metadata of `node`'s LOADED_INPUT events that came from the prefetch cache."""
    return [e.event_specific_data.metadata for e in result.all_events
            if e.event_type_value == "LOADED_INPUT" and e.step_key == node
            and PREFETCH_HIT_META in e.event_specific_data.metadata]


def live_snapshot(root):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def world(tmp_path, instance):
    return World(tmp_path)


def test_tick_prefetches_and_warms_a_critical_step_then_the_live_run_reads_through(world, instance):
    store = world.seed(instance)
    assert not world.prefetch.exists()                       # live runs alone never create the cache
    thread, live = world.start_live(instance, "live-1")
    try:
        before = live_snapshot(world.live)
        first = world.tick(instance)
        assert live_snapshot(world.live) == before           # pre-fetch only reads live storage
    finally:
        world.finish_ingest(thread, live)
    raw_path = str(world.live / "raw")
    entry = world.cache.lookup(raw_path)
    assert entry is not None and entry.size == os.path.getsize(raw_path)
    assert not any(world.live in p.parents for p in world.prefetch.rglob("*"))
    outcomes = read_outcomes(store)
    (fetch,) = [o for o in outcomes if o.stage == "prefetch"]
    assert fetch.activity == "left/publish" and fetch.sources == (raw_path,)
    assert fetch.nbytes == entry.size and fetch.seconds >= 0 and 0.5 < fetch.probability <= 1
    warm = {o.resource: o for o in outcomes if o.stage == "warmup"}
    assert set(warm) == {"index", "broken"} and warm["index"].reason is None
    assert warm["broken"].reason.startswith("failed: RuntimeError: warehouse refused")   # recorded, tick fine
    assert world.calls() == ["warm_up"] and (world.res_root / "index.bin").exists()
    # a second tick neither warms again nor copies again
    second = world.tick(instance, first.cursor)
    assert world.calls() == ["warm_up"]
    assert [o.stage for o in read_outcomes(store)].count("prefetch") == 1
    # the live run takes the predicted branch: the input comes from the cache, same value as live
    result = world.run(instance, "left", "live-1")
    (hit,) = prefetch_hits(result)
    assert hit[PREFETCH_BYTES_META].value == entry.size
    with open(raw_path, "rb") as fh:
        assert world.seen["raw"] == pickle.load(fh) == list(range(1000))
    assert world.seen["warm"] is True                        # the warm-up's artifact was there
    world.tick(instance, second.cursor)
    settled = {o.prediction_id: o for o in read_outcomes(store) if o.stage in ("used", "release")}
    assert {o.stage for o in settled.values()} == {"used"} and len(settled) == 3
    assert world.calls() == ["warm_up"]                      # used: nothing released
    assert world.cache.lookup(raw_path) is not None


def test_without_a_tick_the_live_read_is_cold_and_the_resource_cold(world, instance):
    world.seed(instance)
    world.run(instance, "ingest", "cold-1")
    result = world.run(instance, "left", "cold-1")
    assert prefetch_hits(result) == [] and world.seen["warm"] is False
    assert world.seen["raw"] == list(range(1000)) and not world.prefetch.exists()


def test_rewritten_upstream_makes_the_copy_stale(world, instance):
    world.seed(instance)
    thread, live = world.start_live(instance, "live-2")
    try:
        world.tick(instance)
    finally:
        world.finish_ingest(thread, live)
    raw_path = world.live / "raw"
    assert world.cache.lookup(str(raw_path)) is not None
    world.value["raw"] = list(range(5, 1005))                 # same length, other content
    world.run(instance, "ingest", "other-instance")          # a new materialization of raw
    result = world.run(instance, "left", "live-2")
    assert prefetch_hits(result) == []
    assert world.seen["raw"] == list(range(5, 1005))         # the live value, never the stale copy
    assert world.cache.lookup(str(raw_path)) is None         # the stale entry was dropped


def test_tampered_copy_falls_back_to_live_storage(world, instance):
    world.seed(instance)
    thread, live = world.start_live(instance, "live-3")
    try:
        world.tick(instance)
    finally:
        world.finish_ingest(thread, live)
    entry = world.cache.lookup(str(world.live / "raw"))
    blob = world.cache.blob_path(entry.digest)
    blob.write_bytes(pickle.dumps(["forged"] * 10).ljust(entry.size, b"\0"))
    assert blob.stat().st_size == entry.size
    result = world.run(instance, "left", "live-3")
    assert prefetch_hits(result) == [] and world.seen["raw"] == list(range(1000))
    assert world.cache.lookup(str(world.live / "raw")) is None and not blob.exists()


def test_wrong_branch_releases_the_warm_up_and_discards_the_copies(world, instance):
    store = world.seed(instance)
    thread, live = world.start_live(instance, "live-4")
    try:
        first = world.tick(instance)
    finally:
        world.finish_ingest(thread, live)
    assert world.cache.lookup(str(world.live / "raw")) is not None
    world.run(instance, "right", "live-4")                   # the other branch
    world.tick(instance, first.cursor)
    released = {o.stage: o for o in read_outcomes(store) if o.stage in ("used", "release") and o.resource != "broken"}
    rel = [o for o in read_outcomes(store) if o.stage == "release"]
    assert len(rel) == 3 and all("another branch" in o.reason for o in rel), rel
    assert "used" not in released
    assert world.calls() == ["warm_up", "release"] and not (world.res_root / "index.bin").exists()
    assert world.cache.lookup(str(world.live / "raw")) is None and world.cache.total_bytes() == 0
    assert (world.live / "raw").exists()                     # live storage untouched by rollback


def test_expired_preparation_is_released(tmp_path, instance):
    world = World(tmp_path, ttl_s=1.0)
    store = world.seed(instance)
    thread, live = world.start_live(instance, "live-5")
    try:
        first = world.tick(instance)
        assert world.calls() == ["warm_up"]
        time.sleep(1.2)
        world.tick(instance, first.cursor)                   # live run still held: the TTL decides
    finally:
        world.finish_ingest(thread, live)
    rel = [o for o in read_outcomes(store) if o.stage == "release"]
    assert rel and all("expired" in o.reason for o in rel)
    assert world.calls()[:2] == ["warm_up", "release"]
    # the still-predicted step was prepared afresh in the same tick, under a new id
    warm_ids = [o.prediction_id for o in read_outcomes(store) if o.stage == "warmup" and o.resource == "index"]
    assert len(set(warm_ids)) == 2 and world.calls() == ["warm_up", "release", "warm_up"]


def test_prefetch_and_warmup_can_be_turned_off(tmp_path, instance):
    world = World(tmp_path, prefetch=False, warmup=False)
    store = world.seed(instance)
    thread, live = world.start_live(instance, "live-6")
    try:
        world.tick(instance)
    finally:
        world.finish_ingest(thread, live)
    assert not world.prefetch.exists() and world.calls() == []
    assert not [o for o in read_outcomes(store) if o.stage in ("prefetch", "warmup")]


def test_invalid_configuration_gets_clear_errors(tmp_path, instance):
    for kw, match in [({"prefetch_budget_bytes": -1}, "prefetch_budget_bytes must be an integer >= 0"),
                      ({"prefetch_budget_s": math.nan}, "prefetch_budget_s must be a finite"),
                      ({"warmup_budget_s": -2}, "warmup_budget_s"),
                      ({"prefetch": "yes"}, "prefetch must be True or False")]:
        with pytest.raises(ValueError, match=match):
            SpeculationConfig.from_options(kw)
    with pytest.raises(ValueError):
        PrepareConfig(prefetch_budget_bytes=1.5)
    with pytest.raises(Exception, match="greater than or equal to 0"):
        ShadowIOManager(base_dir=str(tmp_path / "live"), prefetch_max_bytes=-1)
    io = ShadowIOManager(base_dir=str(tmp_path / "live"), shadow_dir=str(tmp_path / "shadow"),
                         prefetch_dir=str(tmp_path / "live" / "cache"))
    with pytest.raises(ShadowIsolationError, match="prefetch_dir .* overlaps base_dir"):
        io.dirs(instance)
    io = ShadowIOManager(base_dir=str(tmp_path / "live"), shadow_dir=str(tmp_path / "shadow"),
                         prefetch_dir=str(tmp_path / "shadow"))
    with pytest.raises(ShadowIsolationError, match="overlaps shadow_dir"):
        io.dirs(instance)
    default = ShadowIOManager(base_dir=str(tmp_path / "live"), shadow_dir=str(tmp_path / "s" / "outputs"))
    assert default.dirs(instance)[3] == str(tmp_path / "s" / "prefetch")
    assert ShadowIOManager(base_dir=str(tmp_path / "live"), prefetch_max_bytes=0).prefetch_cache(instance) is None
