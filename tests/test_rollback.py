"""Rollback: outcome records are written once; a shadow run launched by Dagster's real run launcher
(code server + run worker process) is cancelled, its outputs deleted and a miss recorded."""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import json
import textwrap
import time

import pytest
from dagster import AssetKey, DagsterRunStatus

from shadow_dagster.dagster.instance_config import write_instance_yaml
from shadow_dagster.dagster.launch import submit_asset_run
from shadow_dagster.dagster.rollback import (ACTIVITY_TAG, OUTCOME_RUN_PREFIX, POSITION_TAG, PREDICTED_AT_TAG,
                                             PREFIX_LEN_TAG, TARGETS_TAG, OutcomeRecord, read_outcomes,
                                             record_outcomes, resolve_shadow_runs)
from shadow_dagster.dagster.speculative_sensor import SHADOW_JOB_NAME
from shadow_dagster.speculation.outputs import DELETED, ShadowOutputStore
from shadow_dagster.store.signal_store import SignalStore
from shadow_dagster.tags import PARENT_TAG, PREDICTION_TAG, PROBABILITY_TAG, SHADOW_TAG, WORKFLOW_TAG


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_schema_url")


def test_outcomes_are_idempotent_and_stay_out_of_cases(store_url):
    from shadow_dagster.signals.cases import cases_from_signals

    store = SignalStore(store_url)
    rec = OutcomeRecord("p1", "launched", 1_700_000_000_000, workflow="etl", workflow_key="k", activity="etl/a",
                        probability=0.8)
    hit = OutcomeRecord("p1", "hit", 1_700_000_100_000, probability=0.8, seconds_saved=2.5)
    miss = OutcomeRecord("p1", "miss", 1_700_000_200_000, probability=0.8, seconds_wasted=1.0)
    assert record_outcomes(store, [rec, hit]) == 2
    assert record_outcomes(store, [rec, hit, miss]) == 0         # resolved once, never twice
    got = read_outcomes(store)
    assert [r.stage for r in got] == ["launched", "hit"] and got[1].seconds_saved == 2.5
    rows = store.rows(run_id=OUTCOME_RUN_PREFIX + "p1")
    assert all(r.event_id < 0 and r.kind == "outcome" and r.workflow_key is None for r in rows)
    assert cases_from_signals(store.signals()) == []              # outcomes never become workflow steps
    with pytest.raises(ValueError):
        OutcomeRecord("p1", "maybe", 0)
    store.dispose()


LOCATION = '''
import time
from pathlib import Path
from dagster import Definitions, asset
from shadow_dagster.dagster.critical import guard_assets
from shadow_dagster.dagster.io_manager import ShadowIOManager
from shadow_dagster.dagster.speculative_sensor import shadow_job

ROOT = Path({root!r})

@asset(code_version="1")
def src() -> int:
    return 1

@asset(code_version="1", op_tags={{"shadow_dagster/critical": "false"}})
def slow(src: int) -> int:
    (ROOT / "slow_started").write_text("x")
    for _ in range(1200):          # until cancelled (or released after two minutes at most)
        if (ROOT / "release").exists():
            break
        time.sleep(0.1)
    return src + 1

assets = guard_assets([src, slow])
defs = Definitions(assets=assets, jobs=[shadow_job(assets)], resources={{"io_manager": ShadowIOManager(
    base_dir=str(ROOT / "live"), shadow_dir=str(ROOT / "shadow"), store_url={url!r})}})
'''


def _wait(cond, what, seconds=90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def launcher_instance(tmp_path, monkeypatch):
    """An instance whose runs are launched at once by the DefaultRunLauncher (no queue, no daemon)."""
    from dagster import DagsterInstance

    home = tmp_path / "home"
    home.mkdir()
    write_instance_yaml(home, "run_coordinator:\n  module: dagster.core.run_coordinator\n"
                              "  class: DefaultRunCoordinator\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))       # the run worker process opens the same instance
    inst = DagsterInstance.get()
    yield inst
    inst.dispose()


@contextlib.contextmanager
def _location(tmp_path, instance):
    """The test code location served by a code server, `src` materialised live; yields (workspace, defs, url)."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import PythonFileTarget

    url = f"sqlite:///{tmp_path / 'store.db'}"
    path = tmp_path / "location.py"
    path.write_text(textwrap.dedent(LOCATION.format(root=str(tmp_path), url=url)))
    spec = importlib.util.spec_from_file_location("rollback_location", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.defs.resolve_job_def("__ASSET_JOB").execute_in_process(instance=instance, asset_selection=[AssetKey("src")])
    target = PythonFileTarget(python_file=str(path), attribute="defs", working_directory=str(tmp_path),
                              location_name="loc")
    with WorkspaceProcessContext(instance, target) as process_ctx:
        try:
            yield process_ctx.create_request_context(), module.defs, url
        finally:
            (tmp_path / "release").write_text("x")


def _shadow_tags(pid: str, parent: str, activity: str, predicted_at: float) -> dict:
    return {SHADOW_TAG: "true", PARENT_TAG: parent, PREDICTION_TAG: pid, PROBABILITY_TAG: "0.9",
            ACTIVITY_TAG: activity, TARGETS_TAG: json.dumps(["slow"]), POSITION_TAG: "2", PREFIX_LEN_TAG: "2",
            PREDICTED_AT_TAG: str(predicted_at), WORKFLOW_TAG: "shadow:" + pid}


def test_rollback_cancels_a_run_from_the_real_launcher(tmp_path, launcher_instance):
    instance = launcher_instance
    pid = "pred-cancel-1"
    tags = _shadow_tags(pid, "wf-gone", "left/slow", time.time() - 30)
    with _location(tmp_path, instance) as (workspace, _, url):
        run = submit_asset_run(instance, workspace, "loc", SHADOW_JOB_NAME, [AssetKey("slow")], tags)
        _wait(lambda: (tmp_path / "slow_started").exists(), "the shadow step to start")
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
        signals = SignalStore(url)
        outputs = ShadowOutputStore(tmp_path / "shadow", url)
        res = resolve_shadow_runs(instance, signals, outputs, ttl_s=10)
        assert [(r.prediction_id, r.outcome, r.cancelled) for r in res] == [(pid, "miss", True)]
        assert "expired" in res[0].reason
        assert instance.get_run_by_id(run.run_id).status in (DagsterRunStatus.CANCELING,
                                                              DagsterRunStatus.CANCELED)
        _wait(lambda: instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED, "CANCELED")
        assert all(o.status == DELETED for o in outputs.list(prediction_id=pid))
        misses = [o for o in read_outcomes(signals) if o.stage == "miss"]
        assert len(misses) == 1 and misses[0].shadow_run_id == run.run_id and misses[0].seconds_wasted > 0
        assert not (tmp_path / "live" / "slow").exists()           # nothing reached live storage
        assert resolve_shadow_runs(instance, signals, outputs, ttl_s=10) == []   # settled once


def test_a_shadow_run_the_live_step_overtook_is_cancelled_at_once(tmp_path, launcher_instance):
    """The live step started before the shadow output existed: it can no longer reuse it, so the shadow
    run is a miss while both still compute; it is cancelled and the live run finishes unharmed."""
    instance = launcher_instance
    pid = "pred-late-1"
    with _location(tmp_path, instance) as (workspace, defs, url):
        tags = _shadow_tags(pid, "wf-live", "__ASSET_JOB/slow", time.time())
        run = submit_asset_run(instance, workspace, "loc", SHADOW_JOB_NAME, [AssetKey("slow")], tags)
        _wait(lambda: (tmp_path / "slow_started").exists(), "the shadow step to start")
        live: dict = {}

        def go():
            live["result"] = defs.resolve_job_def("__ASSET_JOB").execute_in_process(
                instance=instance, asset_selection=[AssetKey("slow")], tags={WORKFLOW_TAG: "wf-live"})

        thread = threading.Thread(target=go)
        thread.start()
        try:
            def live_step_running():
                runs = [r for r in instance.get_runs() if r.tags.get(WORKFLOW_TAG) == "wf-live"]
                return runs and any(s.step_key == "slow" and s.status and s.status.value == "IN_PROGRESS"
                                    for s in instance.get_run_step_stats(runs[0].run_id))

            _wait(live_step_running, "the live step to start")
            signals = SignalStore(url)
            outputs = ShadowOutputStore(tmp_path / "shadow", url)
            assert resolve_shadow_runs(instance, signals, outputs, ttl_s=600) == []  # within the grace
            time.sleep(1.2)
            res = resolve_shadow_runs(instance, signals, outputs, ttl_s=600)
            assert [(r.prediction_id, r.outcome, r.cancelled) for r in res] == [(pid, "miss", True)]
            assert "before the shadow output was ready" in res[0].reason
            _wait(lambda: instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED, "CANCELED")
        finally:
            (tmp_path / "release").write_text("x")
            thread.join(120)
        assert live["result"].success and live["result"].output_for_node("slow") == 2
        assert outputs.list(prediction_id=pid) == [] or all(o.status == DELETED for o in outputs.list(prediction_id=pid))
