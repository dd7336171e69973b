"""Graph reconstruction on real Dagster runs: a branching op job chained by a sensor to an asset job.

Cases are built here from ``instance.get_run_step_stats`` (the integrator feeds them from the
signal store instead). Runs of both jobs that share the ``shadow_dagster/workflow`` tag form one
case. Skipped steps (the branch not taken) stay nodes and definition edges, never executions.
"""

from __future__ import annotations

import statistics

import pytest
from dagster import (
    AssetIn, DagsterRunStatus, Definitions, Out, Output, ResourceDefinition, RunRequest, asset,
    build_run_status_sensor_context, define_asset_job, graph, job, op, run_status_sensor,
)

from shadow_dagster.cases import Case, Event
from shadow_dagster.dagster.job_graph import definition_graph
from shadow_dagster.graph.patterns import run_variants
from shadow_dagster.graph.reconstruct import build_workflow_graph
from shadow_dagster.graph.serialize import dumps_graph, loads_graph
from shadow_dagster.tags import CRITICAL_TAG, WORKFLOW_TAG


@op
def load_raw():
    return [3, 1, 2]


@op
def clean(rows):
    return sorted(rows)


@graph
def prepare():
    return clean(load_raw())


@op(config_schema={"branch": str},
    out={"left": Out(is_required=False), "right": Out(is_required=False)})
def choose(context, rows):
    yield Output(rows, context.op_config["branch"])


@op(required_resource_keys={"warehouse"}, pool="db")
def left_path(context, rows):
    return len(rows)


@op(tags={CRITICAL_TAG: "false"})
def right_path(rows):
    return sum(rows)


@op(tags={"dagster/priority": "-1"})   # no inputs: runs last in-process, after the branch
def housekeeping():
    return None


@job(resource_defs={"warehouse": ResourceDefinition.hardcoded_resource("wh")})
def ingest():
    left, right = choose(prepare())
    left_path(left)
    right_path(right)
    housekeeping()


@asset(key_prefix=["reports"], tags={CRITICAL_TAG: "false"},
       op_tags={"dagster-k8s/config": '{"container_config": {"resources": '
                                      '{"requests": {"cpu": "250m", "memory": "64Mi"}}}}'})
def report_data():
    return {"rows": 3}


@asset(ins={"report_data": AssetIn(key_prefix=["reports"])})
def publish_report(report_data):
    return report_data


DEFS = Definitions(assets=[report_data, publish_report],
                   jobs=[define_asset_job("publish", selection=[report_data, publish_report])])


@run_status_sensor(run_status=DagsterRunStatus.SUCCESS, monitored_jobs=[ingest])
def chain_publish(context):
    """Launch `publish` after `ingest`, carrying the workflow key over (the chain)."""
    return RunRequest(run_key=context.dagster_run.run_id, job_name="publish",
                      tags={WORKFLOW_TAG: context.dagster_run.tags[WORKFLOW_TAG]})


STATUS = {"SUCCESS": "success", "FAILURE": "failure", "SKIPPED": "skipped", "IN_PROGRESS": "running"}


def cases_from_instance(instance) -> list[Case]:
    """Adapter: one Case per workflow tag, events from each run's step stats."""
    grouped: dict[str, list[Event]] = {}
    for run in sorted(instance.get_runs(), key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp):
        key = run.tags.get(WORKFLOW_TAG, run.run_id)
        events = grouped.setdefault(key, [])
        for stat in instance.get_run_step_stats(run.run_id):
            start = stat.start_time if stat.start_time is not None else stat.end_time
            events.append(Event(stat.step_key, start, stat.end_time, STATUS[stat.status.value],
                                job=run.job_name, run_id=run.run_id))
    return [Case(key, "ingest_publish", events) for key, events in grouped.items()]


@pytest.fixture
def history(instance):
    publish = DEFS.resolve_job_def("publish")
    for index, branch in enumerate(["left", "right", "left"]):
        tags = {WORKFLOW_TAG: f"day-{index}"}
        run_config = {"ops": {"choose": {"config": {"branch": branch}}}}
        first = ingest.execute_in_process(run_config=run_config, instance=instance, tags=tags)
        assert first.success
        context = build_run_status_sensor_context(
            sensor_name="chain_publish", dagster_event=first.get_run_success_event(),
            dagster_instance=instance, dagster_run=first.dagster_run)
        request = chain_publish(context)
        assert request.job_name == "publish" and request.tags == tags
        assert publish.execute_in_process(instance=instance, tags=request.tags).success
    return cases_from_instance(instance), publish


def test_definition_graph_of_an_op_job():
    edges, info = definition_graph(ingest)
    assert edges == [("choose", "left_path"), ("choose", "right_path"),
                     ("prepare.clean", "choose"), ("prepare.load_raw", "prepare.clean")]
    assert sorted(info) == ["choose", "housekeeping", "left_path", "prepare.clean",
                            "prepare.load_raw", "right_path"]
    assert info["choose"]["outputs"] == {"left": ["left_path"], "right": ["right_path"]}
    assert info["choose"]["optional_outputs"] == ["left", "right"]
    assert (info["left_path"]["required_resources"], info["left_path"]["pool"]) == (["warehouse"], "db")
    assert info["left_path"]["critical"] is True and info["right_path"]["critical"] is False
    assert info["housekeeping"]["tags"] == {"dagster/priority": "-1"}
    assert info["prepare.clean"]["op"] == "clean" and info["prepare.clean"]["job"] == "ingest"


def test_definition_graph_of_an_asset_job_and_prefix():
    edges, info = definition_graph(DEFS.resolve_job_def("publish"), prefix="publish/")
    assert edges == [("publish/reports__report_data", "publish/publish_report")]
    data = info["publish/reports__report_data"]
    assert (data["asset_keys"], data["critical"]) == (["reports/report_data"], False)
    assert (data["cpu"], data["memory"]) == ("250m", "64Mi")
    assert info["publish/publish_report"]["critical"] is True


def test_definition_graph_rejects_non_jobs():
    with pytest.raises(TypeError, match="needs a dagster JobDefinition, got UnresolvedAssetJobDefinition"):
        definition_graph(define_asset_job("x", selection="*"))


def durations(cases, step):
    return [e.duration for c in cases for e in c.events if e.activity == step and e.status == "success"]


def test_graph_from_real_runs(history):
    cases, publish = history
    assert [c.case_id for c in cases] == ["day-0", "day-1", "day-2"]
    assert all(len({e.run_id for e in c.events}) == 2 for c in cases)

    edges_a, info_a = definition_graph(ingest)
    edges_b, info_b = definition_graph(publish)
    g = build_workflow_graph(cases, edges_a + edges_b, {**info_a, **info_b})

    assert sorted(g.nodes) == ["choose", "housekeeping", "left_path", "prepare.clean",
                               "prepare.load_raw", "publish_report", "reports__report_data",
                               "right_path"]
    assert {(u, v): (d["type"], d["count"], d["cases"]) for u, v, d in g.edges(data=True)} == {
        ("prepare.load_raw", "prepare.clean"): ("data", 3, 3),
        ("prepare.clean", "choose"): ("data", 3, 3),
        ("choose", "left_path"): ("data", 2, 2),
        ("choose", "right_path"): ("data", 1, 1),
        ("left_path", "housekeeping"): ("order", 2, 2),      # observed only: no data between them
        ("right_path", "housekeeping"): ("order", 1, 1),
        ("housekeeping", "reports__report_data"): ("trigger", 3, 3),   # ingest run -> publish run
        ("reports__report_data", "publish_report"): ("data", 3, 3),
    }
    assert g.edges["choose", "right_path"]["outputs"] == ["right"]
    assert g.edges["choose", "left_path"]["share"] == pytest.approx(2 / 3)

    # the branch not taken: visible (node + definition edge), counted as skipped, never executed
    assert g.nodes["right_path"]["statuses"] == {"skipped": 2, "success": 1}
    assert g.nodes["left_path"]["statuses"] == {"skipped": 1, "success": 2}
    assert (g.nodes["right_path"]["executions"], g.nodes["right_path"]["cases"]) == (1, 1)
    assert g.nodes["right_path"]["critical"] is False and g.nodes["left_path"]["pool"] == "db"
    assert g.nodes["reports__report_data"]["job"] == "publish"
    assert g.graph == {"workflow": "ingest_publish", "cases": 3, "runs": 6}

    for step in g.nodes:
        values = durations(cases, step)
        node = g.nodes[step]
        assert node["n"] == len(values) == node["executions"]
        assert node["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert node["p50"] == pytest.approx(statistics.median(values), rel=1e-12)
        p95 = values[0] if len(values) == 1 else statistics.quantiles(values, n=20, method="inclusive")[18]
        assert node["p95"] == pytest.approx(p95, rel=1e-12)

    assert loads_graph(dumps_graph(g)).edges["housekeeping", "reports__report_data"]["type"] == "trigger"
    variants = run_variants(cases)
    assert [(v["variant"].split(" → ")[3], v["count"]) for v in variants] == [("left_path", 2),
                                                                           ("right_path", 1)]

