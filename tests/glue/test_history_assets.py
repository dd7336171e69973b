"""The history assets on real runs: graph, patterns and fingerprint from ingested signals."""

import json

import dagster as dg
import pytest

from shadow_dagster.dagster.definitions import REFIT_JOB, shadow_definitions
from shadow_dagster.dagster.fingerprints import fingerprint_path
from shadow_dagster.dagster.ingest import ingest
from shadow_dagster.fingerprint import Fingerprint
from shadow_dagster.store.signal_store import SignalStore


class BranchConfig(dg.Config):
    weekend: bool = False


@dg.op(out={"weekday": dg.Out(is_required=False), "weekend": dg.Out(is_required=False)})
def extract(config: BranchConfig):
    yield dg.Output(1, "weekend" if config.weekend else "weekday")


@dg.op
def full_load(x):
    return x


@dg.op
def light_load(x):
    return x


@dg.op
def publish(a, b):
    return 1


@dg.op(ins={"a": dg.In(dg.Nothing)})
def report():
    return 2


@dg.job
def nightly():
    wd, we = extract()
    report(publish(full_load(wd), light_load(we)))


def history(instance, n=12):
    for i in range(n):
        weekend = i % 3 == 2
        nightly.execute_in_process(
            instance=instance,
            run_config={"ops": {"extract": {"config": {"weekend": weekend}}}},
            tags={"shadow_dagster/workflow": f"night-{i}"},
        )


@pytest.fixture
def defs(tmp_path, dagster_home):
    user = dg.Definitions(jobs=[nightly])
    return dg.Definitions.merge(user, shadow_definitions(user, store_url=f"sqlite:///{tmp_path / 's.db'}"))


def refit(defs, instance):
    result = defs.resolve_job_def(REFIT_JOB).execute_in_process(instance=instance)
    assert result.success
    return {m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node("workflow_graph")
            + result.asset_materializations_for_node("execution_patterns")
            + result.asset_materializations_for_node("workflow_fingerprint")}


def test_history_assets_learn_graph_patterns_and_fingerprint(instance, defs, tmp_path):
    history(instance)
    store = SignalStore(f"sqlite:///{tmp_path / 's.db'}")
    ingest(instance, store)
    meta = refit(defs, instance)

    graph_meta = meta["workflow_graph"]
    assert graph_meta["workflows"].value == 1
    # five steps, four data edges from the definition (the branch not taken still shows)
    assert graph_meta["nightly/nodes"].value == 5
    assert "nightly/extract" in graph_meta["diagram"].value
    path = tmp_path / "dagster_home" / "shadow_dagster" / "graphs" / "nightly.json"
    data = json.loads(path.read_text())
    types = {(e["source"], e["target"]): e["type"] for e in data["edges"]}
    assert types[("nightly/extract", "nightly/full_load")] == "data"
    assert types[("nightly/publish", "nightly/report")] == "data"

    patterns = meta["execution_patterns"]
    assert patterns["instances"].value == 12
    assert patterns["variants"].value == 2
    variants = {r.data["variant"]: r.data["count"] for r in patterns["variants_table"].records}
    assert sorted(variants.values()) == [4, 8]

    fp_meta = meta["workflow_fingerprint"]
    assert fp_meta["nightly/instances"].value == 12
    fp = Fingerprint.load(fingerprint_path("nightly"))
    prediction = fp.predict(["nightly/extract"])
    assert prediction.ok and {s.activity for s in prediction.steps} >= {"nightly/full_load"}
    assert fp_meta["accuracy"].records[0].data["refit"] == "yes"

    # a refit on unchanged history is a no-op
    again = refit(defs, instance)["workflow_fingerprint"]
    assert again["accuracy"].records[0].data["refit"] == "no (history unchanged)"
    assert Fingerprint.load(fingerprint_path("nightly")).content_hash == fp.content_hash


def test_refit_schedule_skips_until_new_runs_finish(instance, defs, tmp_path):
    store = SignalStore(f"sqlite:///{tmp_path / 's.db'}")
    schedule = defs.get_repository_def().get_schedule_def("shadow_dagster_refit_schedule")
    resources = {"shadow_signal_store": defs.get_repository_def().get_top_level_resources()["shadow_signal_store"]}
    # a schedule context opens its own instance from the ref: `with` closes it (left open, it stays
    # the current defs-state storage after it is collected and breaks later Definitions loads)
    with dg.build_schedule_context(instance=instance, resources=resources) as ctx:
        assert isinstance(schedule.evaluate_tick(ctx).skip_message, str)
    history(instance, n=2)
    ingest(instance, store)
    with dg.build_schedule_context(instance=instance, resources=resources) as ctx:
        requests = schedule.evaluate_tick(ctx).run_requests
    assert len(requests) == 1 and requests[0].tags["shadow_dagster/refit_new_runs"] == "2"


def test_refit_schedule_after_a_successful_refit_skips_until_new_runs_finish(instance, defs, tmp_path):
    """Once a refit succeeded, the schedule counts runs from it: nothing new -> skip, new runs -> a request."""
    store = SignalStore(f"sqlite:///{tmp_path / 's.db'}")
    repo = defs.get_repository_def()
    schedule = repo.get_schedule_def("shadow_dagster_refit_schedule")
    resources = {"shadow_signal_store": repo.get_top_level_resources()["shadow_signal_store"]}

    def tick():
        with dg.build_schedule_context(instance=instance, resources=resources) as ctx:
            return schedule.evaluate_tick(ctx)

    history(instance, n=2)
    ingest(instance, store, resolution_ms=1)   # exact end times: the new run below ends after the refit
    refit(defs, instance)                      # a real SUCCESS run of the refit job on this instance
    ingest(instance, store, resolution_ms=1)   # the refit's own run events land too (and are excluded)
    last = instance.get_run_records(dg.RunsFilter(job_name=REFIT_JOB), limit=1)[0]
    assert last.dagster_run.status == dg.DagsterRunStatus.SUCCESS

    skipped = tick()
    assert not skipped.run_requests and "0 run(s) finished since the last refit" in skipped.skip_message

    nightly.execute_in_process(instance=instance, tags={"shadow_dagster/workflow": "night-new"})
    ingest(instance, store, resolution_ms=1)
    requests = tick().run_requests
    assert len(requests) == 1 and requests[0].tags["shadow_dagster/refit_new_runs"] == "1"


def test_window_and_retention_are_validated_at_load_time():
    with pytest.raises(ValueError, match="window_days must be a positive"):
        shadow_definitions(window_days=0)
    with pytest.raises(ValueError, match="shorter than window_days"):
        shadow_definitions(retention_days=7, window_days=30)


def test_predict_cli_for_a_finished_run_and_a_clear_answer_without_fingerprint(instance, defs, tmp_path):
    from click.testing import CliRunner

    from shadow_dagster.cli import main

    history(instance)
    store = SignalStore(f"sqlite:///{tmp_path / 's.db'}")
    ingest(instance, store)
    runner = CliRunner()
    run_id = instance.get_runs(limit=1)[0].run_id
    out = runner.invoke(main, ["predict", run_id, "--json"])
    assert out.exit_code == 0, out.output
    assert "no fingerprint for workflow 'nightly'" in json.loads(out.output.strip().splitlines()[-1])["reason"]

    refit(defs, instance)
    out = runner.invoke(main, ["predict", run_id, "--json"])
    result = json.loads(out.output.strip().splitlines()[-1])
    assert result["workflow"] == "nightly" and result["prefix"][0] == "nightly/extract"
    # the newest run (i=11) took the weekend branch: skipped steps are not part of the prefix,
    # exactly as the fingerprint was fitted (executed steps only)
    assert result["prefix"] == ["nightly/extract", "nightly/light_load"]
    assert result["reason"] is None and result["end_probability"] > 0.5  # the run is complete
    out = runner.invoke(main, ["predict", "no-such-run"])
    assert out.exit_code != 0 and "no run 'no-such-run'" in out.output and "Traceback" not in out.output


def test_fingerprint_fit_and_show_from_the_cli(instance, dagster_home, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from shadow_dagster.cli import main

    url = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setenv("SHADOW_DAGSTER_STORE_URL", url)
    runner = CliRunner()
    out = runner.invoke(main, ["fingerprint", "show", "nightly"])
    assert out.exit_code != 0 and "no fingerprint for workflow 'nightly'" in out.output
    history(instance)
    ingest(instance, SignalStore(url))
    out = runner.invoke(main, ["fingerprint", "fit", "--json"])
    assert out.exit_code == 0, out.output
    fitted = json.loads(out.output.strip().splitlines()[-1])
    assert fitted["nightly"]["instances"] == 12 and fitted["nightly"]["refit"] is True
    again = json.loads(runner.invoke(main, ["fingerprint", "fit", "--json"]).output.strip().splitlines()[-1])
    assert again["nightly"]["refit"] is False
    out = runner.invoke(main, ["fingerprint", "show", "nightly", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["workflow"] == "nightly"
    out = runner.invoke(main, ["fingerprint", "show"])
    assert out.exit_code != 0 and "give either WORKFLOW" in out.output


def test_merge_adds_no_step_to_an_all_assets_user_job(tmp_path, dagster_home):
    """History and report assets are reported specs: `AssetSelection.all()` jobs keep their steps."""

    @dg.asset
    def orders():
        return 1

    @dg.asset(tags={"shadow_dagster/critical": "false"}, code_version="1")
    def features(orders):
        return orders + 1

    def steps(defs, name):
        return sorted(n.name for n in defs.resolve_job_def(name).graph.node_defs)

    everything = dg.define_asset_job("everything", selection=dg.AssetSelection.all())
    user = dg.Definitions(assets=[orders, features], jobs=[everything])
    before = steps(user, "everything")
    merged = dg.Definitions.merge(user, shadow_definitions(user, store_url=f"sqlite:///{tmp_path / 's.db'}"))
    assert steps(merged, "everything") == before == ["features", "orders"]
    reported = ["execution_patterns", "shadow_signals", "speculation_report", "workflow_fingerprint",
                "workflow_graph"]
    assert all(not merged.resolve_assets_def(k).is_executable for k in reported)
    assert steps(merged, REFIT_JOB) == ["execution_patterns", "speculation_report", "workflow_fingerprint",
                                        "workflow_graph"]
    assert {k.to_user_string() for k in merged.resolve_asset_graph().get_all_asset_keys()} == {
        "orders", "features", *reported}


def test_the_refit_never_competes_with_live_runs_for_the_host(instance, defs):
    """One process (no step process loading the code location per op), behind live runs in the run
    queue, its ops in a pool of their own; and a real refit run really gets the low priority."""
    from shadow_dagster.dagster.reported import POOL

    job = defs.resolve_job_def(REFIT_JOB)
    assert job.executor_def.name == dg.in_process_executor.name
    assert job.tags["dagster/priority"] == "-10"
    assert {node.definition.pool for node in job.graph.nodes} == {POOL}
    run = instance.get_run_by_id(job.execute_in_process(instance=instance).run_id)
    assert run.tags["dagster/priority"] == "-10"
