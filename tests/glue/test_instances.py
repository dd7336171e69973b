"""Workflow instances: re-runs and backfills are their own, partitions definitions never merge."""

from __future__ import annotations

import time

import dagster as dg

from shadow_dagster.dagster.ingest import ingest
from shadow_dagster.dagster.instances import family_resolver, instance_keys, partitions_family
from shadow_dagster.dagster.live import predict_run
from shadow_dagster.dagster.live_groups import group_view
from shadow_dagster.dagster.live_groups import live_groups
from shadow_dagster.signals.cases import cases_from_signals
from shadow_dagster.signals.instances import RunFacts, assign, partition_of_key, schedule_of_key, scheduled_key
from shadow_dagster.store.signal_store import SignalStore

P = "2023-01-01"


def run(rid, job, t, **tags):
    return RunFacts(rid, job, t, {"dagster/partition": P, **tags})


def test_a_chain_is_one_instance_and_a_rerun_starts_a_new_one():
    keys = assign([run("a1", "A", 1), run("b1", "B", 2), run("a2", "A", 3), run("b2", "B", 4)])
    assert keys == {"a1": f"{P}@a1", "b1": f"{P}@a1", "a2": f"{P}@a2", "b2": f"{P}@a2"}
    assert partition_of_key(keys["b2"]) == (P, "a2")


def test_a_backfill_never_joins_the_scheduled_runs_of_its_partition():
    keys = assign([run("a1", "A", 1), run("bf", "B", 2, **{"dagster/backfill": "x"}), run("b1", "B", 3)])
    assert keys["bf"] == f"{P}@bf" and keys["b1"] == f"{P}@a1"


def test_a_reexecution_joins_its_parent_even_when_its_job_repeats():
    keys = assign([run("a1", "A", 1), run("a1r", "A", 2, **{"dagster/parent_run_id": "a1"}),
                   RunFacts("u", "U", 3, {}),
                   RunFacts("ur", "U", 4, {"dagster/parent_run_id": "u", "dagster/root_run_id": "u"})])
    assert keys["a1r"] == keys["a1"] == f"{P}@a1"
    assert keys["u"] == keys["ur"] == "u"


def test_jobs_of_different_partitions_definitions_never_merge():
    family = {"M": "monthly", "MB": "monthly", "W": "weekly"}.get
    runs = [run("m", "M", 1), run("w", "W", 2), run("mb", "MB", 3)]
    keys = assign(runs, family)
    assert keys == {"m": f"{P}@m", "w": f"{P}@w", "mb": f"{P}@m"}


def test_the_workflow_tag_names_the_instance():
    keys = assign([run("a1", "A", 1, **{"shadow_dagster/workflow": "day-1"}), run("a2", "A", 2)])
    assert keys == {"a1": "day-1", "a2": f"{P}@a2"}


def test_a_scheduled_run_anchors_its_instance_on_its_tick_so_its_key_is_known_before_it_exists():
    at = {"dagster/schedule_name": "nightly", ".dagster/scheduled_execution_time": "2026-01-02T00:00:00+00:00"}
    keys = assign([run("s", "S", 1, **at), run("t", "T", 2), RunFacts("u", "U", 3, at)])
    assert keys["s"] == keys["t"] == scheduled_key("nightly", "2026-01-02T00:00:00+00:00", P)
    assert keys["u"] == scheduled_key("nightly", "2026-01-02T00:00:00+00:00", None)
    assert schedule_of_key(keys["s"]) == ("nightly", "2026-01-02T00:00:00+00:00", P)
    assert schedule_of_key(keys["u"]) == ("nightly", "2026-01-02T00:00:00+00:00", None)
    assert schedule_of_key(f"{P}@a1") is None and schedule_of_key("day-1") is None


# ------------------------------------------------------------------ on real Dagster runs
monthly = dg.MonthlyPartitionsDefinition(start_date="2023-01-01")
weekly = dg.WeeklyPartitionsDefinition(start_date="2023-01-01")


@dg.asset(partitions_def=monthly)
def month_raw() -> int:
    return 1


@dg.asset(partitions_def=monthly, deps=[month_raw])
def month_report() -> None:
    return None


@dg.asset(partitions_def=weekly)
def week_raw() -> int:
    return 2


defs = dg.Definitions(
    assets=[month_raw, month_report, week_raw],
    jobs=[dg.define_asset_job("load_month", [month_raw]), dg.define_asset_job("report_month", [month_report]),
          dg.define_asset_job("load_week", [week_raw])],
)


def _run(instance, job, **tags):
    return defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=P, tags=tags).run_id


def test_real_runs_rerun_backfill_and_a_weekly_job_with_the_same_key_are_four_instances(instance, tmp_path):
    repo = defs.get_repository_def()
    family_of = family_resolver(repo)
    assert family_of("load_month") == family_of("report_month") == partitions_family(monthly)
    assert family_of("load_week") != family_of("load_month") and family_of("no_such_job") is None

    first = [_run(instance, "load_month"), _run(instance, "report_month")]
    week = _run(instance, "load_week")
    rerun = [_run(instance, "load_month"), _run(instance, "report_month")]
    backfill = _run(instance, "load_month", **{"dagster/backfill": "bf1"})

    store = SignalStore(f"sqlite:///{tmp_path / 'signals.db'}")
    try:
        ingest(instance, store, family_of=family_of)
        cases = {c.case_id: c.activities for c in cases_from_signals(store.signals())}
    finally:
        store.dispose()
    assert cases == {
        f"{P}@{first[0]}": ["load_month/month_raw", "report_month/month_report"],
        f"{P}@{week}": ["load_week/week_raw"],
        f"{P}@{rerun[0]}": ["load_month/month_raw", "report_month/month_report"],
        f"{P}@{backfill}": ["load_month/month_raw"],
    }

    # the live side reads the same instances as the history does
    view = group_view(instance, f"{P}@{rerun[0]}", family_of=family_of)
    assert [r.dagster_run.run_id for r in view.records] == rerun
    assert view.prefix == ["load_month/month_raw", "report_month/month_report"]
    groups = live_groups(instance, time.time(), 3600.0, family_of)
    assert {k: sorted(r.dagster_run.run_id for r in v) for k, v in groups.items()} == {
        f"{P}@{first[0]}": sorted(first), f"{P}@{week}": [week], f"{P}@{rerun[0]}": sorted(rerun),
        f"{P}@{backfill}": [backfill]}
    records = list(instance.get_run_records(filters=dg.RunsFilter(run_ids=[rerun[1]])))
    assert instance_keys(instance, records, family_of) == {rerun[1]: f"{P}@{rerun[0]}"}
    assert predict_run(instance, rerun[1]).workflow_key == f"{P}@{rerun[0]}"



def test_refit_and_report_runs_are_no_live_instance_and_never_join_one(instance):
    """Runs shadow-dagster makes itself (`shadow_dagster/own=true`), in flight or just finished in a
    live partition, are neither a live instance nor a member of one; the live runs keep their key."""
    from shadow_dagster.tags import OWN_RUN_TAG

    own = _run(instance, "load_month", **{OWN_RUN_TAG: "true"})       # finished, in partition P
    live = [_run(instance, "load_month"), _run(instance, "report_month")]
    queued = instance.create_run_for_job(defs.resolve_job_def("load_week"), tags={OWN_RUN_TAG: "true"}).run_id
    assert instance.get_run_by_id(queued).status == dg.DagsterRunStatus.NOT_STARTED   # in flight

    groups = live_groups(instance, time.time(), 3600.0, family_resolver(defs.get_repository_def()))
    assert {k: sorted(r.dagster_run.run_id for r in v) for k, v in groups.items()} == {
        f"{P}@{live[0]}": sorted(live)}
    view = group_view(instance, f"{P}@{live[0]}", family_of=family_resolver(defs.get_repository_def()))
    assert [r.dagster_run.run_id for r in view.records] == live
    assert own not in {r.dagster_run.run_id for v in groups.values() for r in v}


def test_the_cli_reads_partitions_definitions_from_the_code_location(instance, tmp_path, monkeypatch):
    """`ingest` and `predict` load the code location (`-f`, or pyproject.toml as `dagster dev`), so a
    monthly and a weekly job with the same key are two instances there too; without one, one."""
    import json
    from pathlib import Path

    from click.testing import CliRunner

    from shadow_dagster.cli import main
    from shadow_dagster.dagster.code_location import from_pyproject

    month, week = _run(instance, "load_month"), _run(instance, "load_week")
    here = str(Path(__file__).resolve())

    def ingest(store, *args):
        done = CliRunner().invoke(main, ["ingest", "--json", "--store-url", f"sqlite:///{tmp_path / store}", *args])
        assert done.exit_code == 0, done.output
        s = SignalStore(f"sqlite:///{tmp_path / store}")
        try:
            return json.loads(done.output.strip().splitlines()[-1]), sorted(
                (c.case_id, tuple(c.activities)) for c in cases_from_signals(s.signals()))
        finally:
            s.dispose()

    monkeypatch.chdir(tmp_path)                   # no pyproject.toml here: no code location
    report, cases = ingest("plain.db")
    assert report["code_location"] is None and cases == [(f"{P}@{month}", ("load_month/month_raw", "load_week/week_raw"))]
    report, cases = ingest("located.db", "-f", here)
    assert report["code_location"] == f"-f {here}"
    assert cases == sorted([(f"{P}@{month}", ("load_month/month_raw",)), (f"{P}@{week}", ("load_week/week_raw",))])
    done = CliRunner().invoke(main, ["predict", week, "--json", "-f", here])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output.strip().splitlines()[-1])["workflow_key"] == f"{P}@{week}"

    # as `dagster dev` in a project folder: [tool.dagster] module_name, or a dg project's definitions
    (tmp_path / "pyproject.toml").write_text('[tool.dagster]\nmodule_name = "test_instances"\n'
                                             f'working_directory = "{Path(here).parent}"\n')
    target = from_pyproject(tmp_path)
    assert (target.module_name, target.working_directory) == ("test_instances", str(Path(here).parent))
    assert ingest("project.db")[0]["code_location"] == "-m test_instances"
    (tmp_path / "pyproject.toml").write_text('[tool.dg.project]\nroot_module = "my_project"\n')
    assert from_pyproject(tmp_path).module_name == "my_project.definitions"

    # a code location that does not load: one line, and no store created
    done = CliRunner().invoke(main, ["ingest", "--store-url", f"sqlite:///{tmp_path / 'bad.db'}", "-m", "no_such_mod"])
    assert done.exit_code != 0 and "code location -m no_such_mod does not load" in done.output
    assert len(done.output.strip().splitlines()) == 1 and not (tmp_path / "bad.db").exists()
