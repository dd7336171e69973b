"""Rollback: outcome records are written once; a shadow run launched by Dagster's real run launcher
(code server + run worker process) is cancelled, its outputs deleted and a miss recorded."""

from __future__ import annotations

import contextlib
import importlib.util
import pickle
import threading
import json
import textwrap
import time
from datetime import timezone

import pytest
from dagster import AssetKey, DagsterRunStatus

from shadow_dagster.dagster.purge import asset_keys_of_run
from shadow_dagster_bench.home import write_instance_yaml
from shadow_dagster_bench.launch import submit_asset_run
from shadow_dagster.dagster.rollback import resolve_shadow_runs
from shadow_dagster.store.outcomes import OUTCOME_RUN_PREFIX, OutcomeRecord, read_outcomes, record_outcomes
from shadow_dagster.tags import ACTIVITY_TAG, POSITION_TAG, PREDICTED_AT_TAG, PREFIX_LEN_TAG, TARGETS_TAG
from shadow_dagster.dagster.speculative_sensor import SHADOW_JOB_NAME
from shadow_dagster.store.outputs import DELETED, ShadowOutputStore
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
    late = OutcomeRecord("p2", "miss", 1_700_000_300_000, reason="live run executed etl/a itself", output_lead_s=-2.5)
    assert record_outcomes(store, [late]) == 1
    assert {r.prediction_id: r.output_lead_s for r in read_outcomes(store)} == {"p1": None, "p2": -2.5}
    store.dispose()


LOCATION = '''
import time
from datetime import timezone
from pathlib import Path
from dagster import Definitions, asset
from shadow_dagster.dagster.critical import guard_assets
from shadow_dagster.dagster.io_manager import ShadowIOManager
from shadow_dagster.dagster.shadow_runner import shadow_runner_job
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
defs = Definitions(assets=assets, jobs=[shadow_job(assets), shadow_runner_job], resources={{"io_manager": ShadowIOManager(
    base_dir=str(ROOT / "live"), shadow_dir=str(ROOT / "shadow"), store_url={url!r})}})
'''


def _wait(cond, what, seconds=90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


DEFAULT_COORDINATOR = "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"


@pytest.fixture
def launcher_instance(tmp_path, monkeypatch):
    """An instance whose runs are launched at once by the DefaultRunLauncher (no queue, no daemon)."""
    from dagster import DagsterInstance

    home = tmp_path / "home"
    home.mkdir()
    write_instance_yaml(home, DEFAULT_COORDINATOR)
    monkeypatch.setenv("DAGSTER_HOME", str(home))       # the run worker process opens the same instance
    inst = DagsterInstance.get()
    yield inst
    inst.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_launcher_instance(request, tmp_path, monkeypatch):
    """Like launcher_instance, on consolidated SQLite storage and on dagster-postgres storage (a fresh
    PostgreSQL schema: runs, event log and asset index all there)."""
    from dagster import DagsterInstance

    if request.param == "sqlite":
        yield request.getfixturevalue("launcher_instance")
        return
    url = request.getfixturevalue("pg_schema_url")
    url = "postgresql+psycopg2://" + url.split("://", 1)[1]     # dagster-postgres ships psycopg2
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(f"storage:\n  postgres:\n    postgres_url: {json.dumps(url)}\n"
                                       "telemetry: {enabled: false}\n" + DEFAULT_COORDINATOR)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    inst = DagsterInstance.get()
    yield inst
    # the code server process still opens the instance while it shuts down: let it exit before the
    # schema is dropped (else it logs "no schema has been selected")
    deadline = time.monotonic() + 60
    while _children() and time.monotonic() < deadline:
        time.sleep(0.2)
    inst.dispose()


def _children() -> list[int]:
    """Live child processes of this test process (Linux /proc)."""
    import os

    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            out.append(int(pid))
    return out


@contextlib.contextmanager
def _location(tmp_path, instance):
    """The test code location served by a code server, `src` materialised live; yields (workspace, defs, url)."""
    from shadow_dagster.dagster.compat import PythonFileTarget, WorkspaceProcessContext

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


def _submit_shadow(instance, workspace, tags, assets=("slow",)):
    """Launch a shadow run as the speculative sensor's RunRequest does: a run of the runner job."""
    from shadow_dagster.dagster.shadow_runner import RUNNER_JOB_NAME, runner_run_config, runner_tags

    return submit_asset_run(instance, workspace, "loc", RUNNER_JOB_NAME, None, {**tags, **runner_tags(assets, None)},
                            run_config=runner_run_config(assets, None))


def test_rollback_cancels_a_run_from_the_real_launcher(tmp_path, launcher_instance):
    instance = launcher_instance
    pid = "pred-cancel-1"
    tags = _shadow_tags(pid, "wf-gone", "left/slow", time.time() - 30)
    with _location(tmp_path, instance) as (workspace, _, url):
        run = _submit_shadow(instance, workspace, tags)
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
        assert not res[0].purged                                   # still in flight when settled
        assert resolve_shadow_runs(instance, signals, outputs, ttl_s=10) == []   # settled once
        # cancelled: it stays inspectable until the retention period is over, then it is deleted; it
        # never had an asset event (planned, failed or materialised) in the live instance
        _wait(lambda: instance.get_run_by_id(run.run_id).is_finished, "the cancelled run to finish")
        assert asset_keys_of_run(instance, run.run_id) == set()
        assert instance.get_asset_records([AssetKey("slow")]) == [] or \
            instance.get_asset_records([AssetKey("slow")])[0].asset_entry.last_run_id != run.run_id
        assert instance.get_latest_materialization_event(AssetKey("slow")) is None
        assert resolve_shadow_runs(instance, signals, outputs, ttl_s=10, retention_s=0) == []
        assert instance.get_run_by_id(run.run_id) is None


def test_a_shadow_run_the_live_step_overtook_is_cancelled_at_once(tmp_path, launcher_instance):
    """The live step started before the shadow output existed: it can no longer reuse it, so the shadow
    run is a miss while both still compute; it is cancelled and the live run finishes unharmed."""
    instance = launcher_instance
    pid = "pred-late-1"
    with _location(tmp_path, instance) as (workspace, defs, url):
        tags = _shadow_tags(pid, "wf-live", "__ASSET_JOB/slow", time.time())
        run = _submit_shadow(instance, workspace, tags)
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
            from shadow_dagster.dagster.purge import NotAShadowRun, purge_shadow_run

            live_run = [r for r in instance.get_runs() if r.tags.get(WORKFLOW_TAG) == "wf-live"][0]
            with pytest.raises(NotAShadowRun):                   # a live run in flight is never purged
                purge_shadow_run(instance, live_run)
            _wait(lambda: instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED, "CANCELED")
            assert resolve_shadow_runs(instance, signals, outputs, ttl_s=600) == []
            assert instance.get_run_by_id(run.run_id) is not None    # kept for the retention period
            assert resolve_shadow_runs(instance, signals, outputs, ttl_s=600, retention_s=0) == []
            assert instance.get_run_by_id(run.run_id) is None        # deleted once it is over
            assert instance.get_run_by_id(live_run.run_id).status == DagsterRunStatus.STARTED   # untouched
        finally:
            (tmp_path / "release").write_text("x")
            thread.join(120)
        assert live["result"].success and live["result"].output_for_node("slow") == 2
        assert outputs.list(prediction_id=pid) == [] or all(o.status == DELETED for o in outputs.list(prediction_id=pid))


def _catalog_view(instance, key: AssetKey):
    """What Dagster shows for `key`: (latest materialization run, asset-record run, automation's view,
    data version record run, runs in the materialization history)."""
    from shadow_dagster.dagster.compat import AssetKeyPartitionKey, CachingInstanceQueryer, LoadingContextForTest

    latest = instance.get_latest_materialization_event(key)
    record = instance.get_asset_records([key])[0].asset_entry.last_materialization_record
    graph = _location_graph[0]
    seen = CachingInstanceQueryer(instance, graph, LoadingContextForTest(instance)) \
        .get_latest_materialization_or_observation_record(AssetKeyPartitionKey(key))
    dv = instance.get_latest_data_version_record(key)
    history = [r.run_id for r in instance.fetch_materializations(key, limit=100).records]
    return (latest and latest.run_id, record and record.run_id, seen and seen.run_id, dv and dv.run_id, history)


_location_graph: list = []


def test_a_shadow_run_never_shows_in_the_catalog_and_is_deleted_after_retention(tmp_path,
                                                                                    any_launcher_instance):
    """Live materialization of `slow`, then a shadow run (real launcher) computes it too: every view
    Dagster has of `slow` (latest event, asset record, automation, data version, history) stays the
    live run's while and after it runs. The prediction misses: rollback deletes its outputs; the run
    stays inspectable until the retention period is over, then it is deleted, and the outcome is
    still listed. Runs on SQLite and PostgreSQL storage."""
    from dagster import DagsterRun

    from shadow_dagster.dagster.purge import NotAShadowRun, purge_shadow_run
    from shadow_dagster.dagster.speculation_report import shadow_run_rows

    instance = any_launcher_instance
    pid = "pred-purge-1"
    key = AssetKey("slow")
    (tmp_path / "release").write_text("x")            # `slow` returns at once in this test
    with _location(tmp_path, instance) as (workspace, defs, url):
        _location_graph[:] = [defs.resolve_asset_graph()]
        live = defs.resolve_job_def("__ASSET_JOB").execute_in_process(
            instance=instance, asset_selection=[key], tags={WORKFLOW_TAG: "wf-purge"})
        assert live.success
        live_view = _catalog_view(instance, key)
        assert live_view[:4] == (live.run_id,) * 4
        run = _submit_shadow(instance, workspace, _shadow_tags(pid, "wf-purge", "left/slow", time.time() - 30))
        _wait(lambda: instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS, "shadow SUCCESS")
        assert _catalog_view(instance, key) == live_view           # the catalog shows the live run only
        signals = SignalStore(url)
        outputs = ShadowOutputStore(tmp_path / "shadow", url)
        assert outputs.list(prediction_id=pid)
        # guards: a live run is never purged, a forged shadow-tagged object does not fool the guard
        with pytest.raises(NotAShadowRun):
            purge_shadow_run(instance, instance.get_run_by_id(live.run_id))
        forged = DagsterRun(job_name="__ASSET_JOB", run_id=live.run_id, tags={SHADOW_TAG: "true"})
        with pytest.raises(NotAShadowRun):
            purge_shadow_run(instance, forged)
        assert instance.get_run_by_id(live.run_id) is not None
        res = resolve_shadow_runs(instance, signals, outputs, ttl_s=10)
        assert [(r.prediction_id, r.outcome) for r in res] == [(pid, "miss")]
        assert instance.get_run_by_id(run.run_id) is not None      # inspectable for the retention period
        assert resolve_shadow_runs(instance, signals, outputs, ttl_s=10, retention_s=0) == []
        assert instance.get_run_by_id(run.run_id) is None          # then deleted
        assert all(o.status == DELETED for o in outputs.list(prediction_id=pid))
        view = _catalog_view(instance, key)
        assert view[:4] == (live.run_id,) * 4, view
        assert run.run_id not in view[4] and live.run_id in view[4]
        assert asset_keys_of_run(instance, run.run_id) == set()
        assert instance.get_run_by_id(live.run_id).status == DagsterRunStatus.SUCCESS
        # idempotent across ticks; the outcome stays queryable and listed as purged
        assert resolve_shadow_runs(instance, signals, outputs, ttl_s=10, retention_s=0) == []
        assert purge_shadow_run(instance, run.run_id).purged
        stages = [o.stage for o in read_outcomes(signals) if o.prediction_id == pid]
        assert stages.count("miss") == 1 and stages.count("purged") == 1
        rows = [r for r in shadow_run_rows(instance, read_outcomes(signals)) if r["run_id"] == run.run_id]
        assert [(r["status"], r["outcome"], r["activity"]) for r in rows] == [("purged", "miss", "left/slow")]
        assert pickle.loads((tmp_path / "live" / "slow").read_bytes()) == 2     # live storage: the live value


def test_a_miss_says_when_the_shadow_output_was_ready_against_the_live_step(tmp_path):
    """"The live run executed the step itself" has two causes: the output came too late, or it was
    there and did not match. The miss reason tells them apart from the stored output's time."""
    from dagster import DagsterRun

    from shadow_dagster.dagster.live_groups import GroupView
    from shadow_dagster.dagster.rollback import _output_timing

    outputs = ShadowOutputStore(tmp_path / "shadow", f"sqlite:///{tmp_path / 's.db'}")
    run = DagsterRun(job_name=SHADOW_JOB_NAME, run_id="shadow-run-1", tags={SHADOW_TAG: "true"})
    assert _output_timing(run, GroupView("wf", steps=[(time.time(), "left/a", "SUCCESS", "r")]), "left/a",
                          ["a"], outputs) == ("; the shadow run wrote no output", None)
    made = outputs.write("ab" * 32, b"payload", asset_key="a", partition_key=None, run_id=run.run_id)
    ready = made.created_at.replace(tzinfo=made.created_at.tzinfo or timezone.utc).timestamp()
    early = GroupView("wf", steps=[(ready - 2.5, "left/a", "SUCCESS", "r")])
    late = GroupView("wf", steps=[(ready + 4.0, "left/a", "SUCCESS", "r")])
    assert _output_timing(run, early, "left/a", ["a"], outputs) == \
        ("; the shadow output was ready 2.5s after the live step started", -2.5)
    assert _output_timing(run, late, "left/a", ["a"], outputs) == \
        ("; the shadow output was ready 4.0s before the live step started", 4.0)
    assert _output_timing(run, late, "left/other", ["a"], outputs) == ("", None)   # no such live step
