"""Graph reconstruction on hand-built cases: branches, a retry, concurrency, a two-job chain."""

from __future__ import annotations

import pytest

from shadow_dagster.cases import Case, Event
from shadow_dagster.graph.reconstruct import build_workflow_graph, duration_stats, group_by_workflow

ETL_EDGES = [("extract", "transform_a"), ("extract", "transform_b"),
             ("transform_a", "load"), ("transform_b", "load")]


def ev(activity, start, end, status="success", run="r", **kw):
    return Event(activity, float(start), None if end is None else float(end), status, run_id=run, **kw)


def etl_cases() -> list[Case]:
    c1 = Case("c1", "etl", [ev("extract", 0, 2, output_bytes=100), ev("transform_a", 2, 5),
                            ev("transform_b", 2, 2, "skipped"), ev("load", 5, 6)])
    c2 = Case("c2", "etl", [ev("extract", 0, 4, output_bytes=300),
                            ev("transform_b", 4, 7, "failure"), ev("transform_b", 7, 9),
                            ev("transform_a", 4, 4, "skipped"), ev("load", 9, 10)])
    c3 = Case("c3", "etl", [ev("extract", 0, 3), ev("transform_a", 3, 4), ev("load", 4, 6),
                            ev("notify", 6, 6.5)])
    return [c1, c2, c3]


def edge_table(graph):
    return {(u, v): (d["type"], d["count"], d["cases"]) for u, v, d in graph.edges(data=True)}


def test_branches_retry_and_order_edges():
    g = build_workflow_graph(etl_cases(), ETL_EDGES,
                             {"load": {"required_resources": ["warehouse"], "pool": "db",
                                       "critical": True, "outputs": {"result": []}}})
    assert g.graph == {"workflow": "etl", "cases": 3, "runs": 3}
    assert sorted(g.nodes) == ["extract", "load", "notify", "transform_a", "transform_b"]
    assert edge_table(g) == {
        ("extract", "transform_a"): ("data", 2, 2),
        ("extract", "transform_b"): ("data", 2, 1),      # two attempts of the retried step
        ("transform_a", "load"): ("data", 2, 2),
        ("transform_b", "load"): ("data", 1, 1),
        ("transform_b", "transform_b"): ("order", 1, 1),  # the retry, as a self-loop
        ("load", "notify"): ("order", 1, 1),              # observed only, no definition edge
    }
    assert g.edges["extract", "transform_a"]["share"] == pytest.approx(2 / 3)
    assert g.edges["extract", "transform_a"]["bytes"] == 200.0   # mean of 100 and 300
    assert g.edges["load", "notify"]["bytes"] is None

    extract = g.nodes["extract"]
    assert (extract["n"], extract["mean"], extract["p50"]) == (3, 3.0, 3.0)
    assert extract["p95"] == pytest.approx(3.9)            # [2, 3, 4]: 3 + 0.9 * (4 - 3)
    tb = g.nodes["transform_b"]
    assert (tb["n"], tb["executions"], tb["cases"], tb["mean"], tb["p50"]) == (2, 2, 1, 2.5, 2.5)
    assert tb["p95"] == pytest.approx(2.95)
    assert tb["statuses"] == {"failure": 1, "skipped": 1, "success": 1}
    ta = g.nodes["transform_a"]
    assert (ta["executions"], ta["cases"], ta["statuses"]) == (2, 2, {"skipped": 1, "success": 2})
    assert g.nodes["load"]["required_resources"] == ["warehouse"]
    assert (g.nodes["load"]["pool"], g.nodes["load"]["critical"]) == ("db", True)
    assert g.nodes["notify"]["task"] == "notify"


def test_skipped_branch_is_a_node_with_a_definition_edge_but_no_executions():
    cases = [Case("c1", "etl", [ev("extract", 0, 1), ev("transform_a", 1, 2),
                                ev("transform_b", 1, 1, "skipped")])]
    g = build_workflow_graph(cases, ETL_EDGES)
    assert g.nodes["transform_b"]["executions"] == 0
    assert g.nodes["transform_b"]["n"] == 0 and g.nodes["transform_b"]["mean"] is None
    assert g.nodes["transform_b"]["statuses"] == {"skipped": 1}
    assert edge_table(g)[("extract", "transform_b")] == ("data", 0, 0)
    assert g.nodes["load"]["statuses"] == {}          # defined only, never seen


def test_event_log_without_definition_links_immediate_predecessors_only():
    # a and b overlap (concurrent): neither precedes the other; c follows b, which ended last.
    cases = [Case("x", "log", [ev("a", 0, 2, run=None), ev("b", 1, 3, run=None),
                               ev("c", 3, 4, run=None)]),
             Case("y", "log", [ev("a", 0, 1, run=None), ev("c", 1, 2, run=None)])]
    g = build_workflow_graph(cases)
    assert edge_table(g) == {("b", "c"): ("order", 1, 1), ("a", "c"): ("order", 1, 1)}
    assert g.graph["runs"] == 2


def test_predecessor_ties_prefer_the_later_start():
    case = Case("x", "log", [ev("long", 0, 5), ev("short", 4, 5), ev("next", 5, 6)])
    assert edge_table(build_workflow_graph([case])) == {("short", "next"): ("order", 1, 1)}


def test_two_job_chain_gets_a_trigger_edge_between_runs():
    def chain(cid, t0, reverse=False):
        events = [ev("fetch", t0, t0 + 1, run=f"{cid}-a", job="ingest"),
                  ev("parse", t0 + 1, t0 + 2, run=f"{cid}-a", job="ingest"),
                  ev("build", t0 + 5, t0 + 6, run=f"{cid}-b", job="report"),
                  ev("publish", t0 + 6, t0 + 8, run=f"{cid}-b", job="report")]
        return Case(cid, "daily", events[::-1] if reverse else events)

    cases = [chain("d1", 0), chain("d2", 100, reverse=True), Case("d3", "daily", [
        ev("fetch", 200, 201, run="d3-a", job="ingest"), ev("parse", 201, 202, "failure", run="d3-a")])]
    g = build_workflow_graph(cases, [("fetch", "parse"), ("build", "publish")])
    assert edge_table(g) == {("fetch", "parse"): ("data", 3, 3), ("build", "publish"): ("data", 2, 2),
                             ("parse", "build"): ("trigger", 2, 2)}
    assert g.edges["parse", "build"]["share"] == pytest.approx(2 / 3)
    assert g.graph["runs"] == 5
    assert (g.nodes["publish"]["job"], g.nodes["publish"]["mean"]) == ("report", 2.0)
    assert g.nodes["parse"]["statuses"] == {"failure": 1, "success": 2}


def test_duration_stats_exact():
    assert duration_stats([]) == {"n": 0, "mean": None, "p50": None, "p95": None,
                                  "min": None, "max": None}
    s = duration_stats([1.0, 2.0, 3.0, 4.0, 10.0])
    assert (s["n"], s["mean"], s["p50"], s["min"], s["max"]) == (5, 4.0, 3.0, 1.0, 10.0)
    assert s["p95"] == pytest.approx(4.0 + 0.8 * 6.0)      # index 3.8 of the sorted values


def test_running_and_canceled_steps_are_executions_without_durations():
    g = build_workflow_graph([Case("x", "w", [ev("a", 0, 1), ev("b", 1, None, "running")]),
                              Case("y", "w", [ev("a", 0, 3), ev("b", 3, 4, "canceled")])],
                             [("a", "b")])
    assert (g.nodes["b"]["executions"], g.nodes["b"]["n"], g.nodes["b"]["cases"]) == (2, 0, 2)
    assert (g.nodes["a"]["n"], g.nodes["a"]["mean"]) == (2, 2.0)
    assert edge_table(g) == {("a", "b"): ("data", 2, 2)}


def test_empty_history_gives_the_definition_graph():
    g = build_workflow_graph([], [("a", "b")], {"c": {"critical": False}})
    assert sorted(g.nodes) == ["a", "b", "c"]
    assert edge_table(g) == {("a", "b"): ("data", 0, 0)}
    assert g.graph == {"workflow": None, "cases": 0, "runs": 0}


def test_group_by_workflow_keeps_order():
    cases = [Case("1", "a"), Case("2", "b"), Case("3", "a")]
    assert {k: [c.case_id for c in v] for k, v in group_by_workflow(cases).items()} == {
        "a": ["1", "3"], "b": ["2"]}


@pytest.mark.parametrize("cases, edges, info, message", [
    ("nope", None, None, "cases must be a list of Case"),
    ([{"case_id": 1}], None, None, r"cases\[0\] must be a Case"),
    ([Case("c", "w", [ev("a", 0, 1, "done")])], None, None, "unknown status 'done'"),
    ([Case("c", "w", [ev("a", 5, 1)])], None, None, "end 1.0 is before start 5.0"),
    ([Case("c", "w", [Event("a", float("nan"))])], None, None, "start must be a finite number"),
    ([Case("c", "w", [Event("", 0.0)])], None, None, "activity must be a non-empty string"),
    ([Case("c", "w"), Case("d", "v")], None, None, r"mix several workflows \['v', 'w'\]"),
    ([], [("a",)], None, r"definition_edges\[0\] must be a \(source, target\) pair"),
    ([], None, {"a": []}, r"node_info\['a'\] must be a dict"),
    ([], None, {"a": {"pool": 3}}, r"node_info\['a'\]\['pool'\] has type int"),
    ([], None, {"a": {"mean": 3}}, r"node_info\['a'\] sets \['mean'\], which history computes"),
    ([Case("c", "w"), Case("c", "w")], None, None, r"cases\[1\]: case_id 'c' appears twice"),
])
def test_bad_input_is_named(cases, edges, info, message):
    with pytest.raises(ValueError, match=message):
        build_workflow_graph(cases, edges, info)


def test_graph_package_is_pure():
    import subprocess
    import sys

    code = ("import sys, shadow_dagster.graph; "
            "bad = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
