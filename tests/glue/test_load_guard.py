"""The load guard: no shadow run is launched while the host's load per core exceeds the policy's
`max_load_per_core` (the load benchmark measured shadow runs slowing live runs on a saturated host)."""

from __future__ import annotations

import math

import pytest
from dagster import Definitions, asset, build_sensor_context

from shadow_dagster.dagster import speculative_sensor as spec
from shadow_dagster.dagster import speculative_tick as tick
from shadow_dagster.dagster.host import host_load_per_core
from shadow_dagster.dagster.shadow_job import shadow_job
from shadow_dagster.dagster.shadow_runner import SHADOW_JOB_NAME
from shadow_dagster.speculation.cursor import TickCursor
from shadow_dagster.dagster.critical import guard_assets
from shadow_dagster import PolicyConfig, ShadowStorage, SpeculationConfig
from shadow_dagster.tags import CRITICAL_TAG


def test_guard_is_off_by_default_and_blocks_only_above_the_threshold():
    assert not PolicyConfig().host_saturated(50.0)
    guard = PolicyConfig(max_load_per_core=0.8)
    assert not guard.host_saturated(0.8)
    assert guard.host_saturated(0.81)
    assert not guard.host_saturated(0.0)
    assert not guard.host_saturated(None)          # no load average on this OS: never blocks
    with pytest.raises(ValueError):
        guard.host_saturated(-1.0)


@pytest.mark.parametrize("bad", [0, -0.5, math.inf, math.nan, "1", True])
def test_guard_threshold_is_validated(bad):
    with pytest.raises(ValueError, match="max_load_per_core"):
        PolicyConfig(max_load_per_core=bad)


def test_host_load_per_core_is_a_non_negative_number_or_none():
    load = host_load_per_core()
    assert load is None or (isinstance(load, float) and load >= 0)


def _defs() -> Definitions:
    """One non-critical asset that stores nothing (no IO manager: shadow-safe) and the shadow job over it."""
    @asset(code_version="1", op_tags={CRITICAL_TAG: "false"})
    def stats() -> None:
        return None

    assets = guard_assets([stats])
    return Definitions(assets=assets, jobs=[shadow_job(assets)])


def _storage(tmp_path) -> ShadowStorage:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    return ShadowStorage(signal_store_url=url, output_store_url=url, shadow_dir=str(tmp_path / "shadow"))


def _sensor_tick(instance, tmp_path, policy):
    defs = _defs()
    sensor = spec.build_speculative_sensor(config=SpeculationConfig(policy=policy), storage=_storage(tmp_path))
    data = sensor.evaluate_tick(build_sensor_context(instance=instance, repository_def=defs.get_repository_def()))
    return data


def test_saturated_host_skips_the_tick(instance, tmp_path, monkeypatch):
    monkeypatch.setattr(tick, "host_load_per_core", lambda: 3.5)
    data = _sensor_tick(instance, tmp_path, PolicyConfig(max_load_per_core=1.0))
    assert not data.run_requests
    assert data.skip_message.startswith("host saturated: load 3.50 per core > max_load_per_core 1.0")


def test_guard_lets_the_tick_plan_below_the_threshold_and_is_not_consulted_when_off(instance, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setattr(tick, "host_load_per_core", lambda: 0.5)
    assert "host saturated" not in _sensor_tick(instance, tmp_path, PolicyConfig(max_load_per_core=1.0)).skip_message

    def boom():
        raise AssertionError("the load is read only when the guard is on")

    monkeypatch.setattr(tick, "host_load_per_core", boom)
    assert "host saturated" not in _sensor_tick(instance, tmp_path, PolicyConfig()).skip_message


def test_tick_budget_wait_spreads_ticks_by_their_cost():
    assert TickCursor(tick=None).budget_wait(100.0, 0.25) == 0.0
    assert TickCursor(tick=(100.0, 2.0)).budget_wait(101.0, 0.25) == pytest.approx(7.0)   # 2 s / 0.25 from 100
    assert TickCursor(tick=(100.0, 2.0)).budget_wait(110.0, 0.25) == 0.0
    assert TickCursor(tick=(100.0, 2.0)).budget_wait(101.0, None) == 0.0


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "0.2", True, math.nan])
def test_tick_budget_share_is_validated(bad):
    with pytest.raises(ValueError, match="max_tick_share"):
        SpeculationConfig(max_tick_share=bad)


def test_a_costly_last_tick_skips_evaluations_and_keeps_the_cursor(instance, tmp_path):
    import json
    import time

    defs = _defs()
    sensor = spec.build_speculative_sensor(config=SpeculationConfig(max_tick_share=0.25), storage=_storage(tmp_path))
    repo = defs.get_repository_def()
    first = sensor.evaluate_tick(build_sensor_context(instance=instance, repository_def=repo))
    started, took = json.loads(first.cursor)["tick"]
    assert started <= time.time() and took >= 0
    costly = json.dumps({**json.loads(first.cursor), "tick": [time.time(), 30.0]})   # a 30 s tick just now
    data = sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=costly, repository_def=repo))
    assert data.skip_message.startswith("tick budget: the last tick took 30.00s; next tick in 1")
    assert data.cursor in (None, costly)                     # nothing changed
    old = json.dumps({**json.loads(first.cursor), "tick": [time.time() - 200, 30.0]})
    assert not sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=old, repository_def=repo)
                                    ).skip_message.startswith("tick budget")


def test_the_sensor_plans_with_the_launch_latency_it_observes(instance, tmp_path):
    """A shadow run that started 50 s after its prediction teaches the sensor a 50 s launch latency."""
    import json
    import time

    from shadow_dagster.tags import PREDICTED_AT_TAG
    from shadow_dagster.tags import PREDICTION_TAG, SHADOW_TAG

    defs = _defs()
    sjob = defs.resolve_job_def(SHADOW_JOB_NAME)
    defs.resolve_job_def(sjob.name).execute_in_process(instance=instance, tags={
        SHADOW_TAG: "true", PREDICTION_TAG: "p-late", PREDICTED_AT_TAG: f"{time.time() - 50:.3f}"})
    sensor = spec.build_speculative_sensor(config=SpeculationConfig(launch_overhead_s=1.0), storage=_storage(tmp_path))
    data = sensor.evaluate_tick(build_sensor_context(instance=instance, repository_def=defs.get_repository_def()))
    assert json.loads(data.cursor)["launch_s"] == pytest.approx(50, abs=5)


def test_a_shadow_run_still_waiting_to_start_raises_the_launch_latency(instance, tmp_path):
    """A shadow run still starting 40 s after its prediction has a launch latency of at least 40 s: the
    sensor counts it before it starts, so a slow launcher is noticed while its runs still wait."""
    import json
    import time
    import uuid

    from dagster import DagsterRunStatus
    from dagster import DagsterRun

    from shadow_dagster.tags import PREDICTED_AT_TAG
    from shadow_dagster.tags import PREDICTION_TAG, SHADOW_TAG

    defs = _defs()
    instance.add_run(DagsterRun(job_name=SHADOW_JOB_NAME, run_id=str(uuid.uuid4()),
                                status=DagsterRunStatus.STARTING,
                                tags={SHADOW_TAG: "true", PREDICTION_TAG: "p-queued",
                                      PREDICTED_AT_TAG: f"{time.time() - 40:.3f}"}))
    sensor = spec.build_speculative_sensor(config=SpeculationConfig(launch_overhead_s=1.0), storage=_storage(tmp_path))
    data = sensor.evaluate_tick(build_sensor_context(instance=instance, repository_def=defs.get_repository_def()))
    assert json.loads(data.cursor)["launch_s"] == pytest.approx(40, abs=5)
