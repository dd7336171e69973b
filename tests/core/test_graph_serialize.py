"""Node-link JSON round trip and rejection of corrupt or foreign documents."""

from __future__ import annotations

import json

import networkx as nx
import pytest

from shadow_dagster.cases import Case, Event
from shadow_dagster.graph.reconstruct import build_workflow_graph
from shadow_dagster.graph.serialize import (
    FORMAT, SCHEMA_VERSION, GraphFormatError, dumps_graph, graph_from_json, graph_to_json,
    load_graph, loads_graph, save_graph,
)


def sample_graph() -> nx.DiGraph:
    cases = [Case("c1", "w", [Event("a", 0.0, 1.0, run_id="r1", output_bytes=10),
                              Event("b", 1.0, 2.0, run_id="r1"),
                              Event("b", 2.0, 3.5, run_id="r1"),
                              Event("c", 9.0, 9.5, run_id="r2", job="j2")])]
    info = {"a": {"required_resources": ["db"], "tags": {"x": "1"}, "outputs": {"result": ["b"]}}}
    return build_workflow_graph(cases, [("a", "b")], info)


def test_round_trip_keeps_every_attribute(tmp_path):
    g = sample_graph()
    back = load_graph(save_graph(g, tmp_path / "g.json"))
    assert back.graph == g.graph
    assert dict(back.nodes(data=True)) == dict(g.nodes(data=True))
    assert {(u, v): d for u, v, d in back.edges(data=True)} == {(u, v): d for u, v, d in g.edges(data=True)}
    assert back.edges["a", "b"]["outputs"] == ["result"]
    assert dumps_graph(back) == dumps_graph(g)


def test_document_is_versioned_node_link():
    doc = graph_to_json(sample_graph())
    assert (doc["format"], doc["schema_version"]) == (FORMAT, SCHEMA_VERSION)
    assert (doc["directed"], doc["multigraph"]) == (True, False)
    assert {e["source"] + ">" + e["target"] for e in doc["edges"]} == {"a>b", "b>b", "b>c"}


def corrupt(mutate):
    doc = json.loads(dumps_graph(sample_graph()))
    mutate(doc)
    return json.dumps(doc)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object, got list"),
    (json.dumps(nx.node_link_data(nx.path_graph(3, nx.DiGraph), edges="edges")),
     "not a workflow graph: format is None"),
    (corrupt(lambda d: d.update(schema_version=99)), "unsupported workflow graph schema_version 99"),
    (corrupt(lambda d: d.update(multigraph=True)), "must be directed and not a multigraph"),
    (corrupt(lambda d: d.pop("edges")), "needs a 'edges' list"),
    (corrupt(lambda d: d["nodes"][0].pop("n")), r"node 'a': 'n' must be int, got None"),
    (corrupt(lambda d: d["edges"][0].update(target="zz")), r"edges\[0\] target 'zz' is not a node"),
    (corrupt(lambda d: d["edges"][0].update(type="magic")), "type 'magic' is not one of"),
    (corrupt(lambda d: d["edges"][0].update(count="3")), "'count' must be int, got '3'"),
])
def test_bad_documents_are_rejected_with_a_reason(text, message):
    with pytest.raises(GraphFormatError, match=message):
        loads_graph(text)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(GraphFormatError, match="cannot read workflow graph"):
        load_graph(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(GraphFormatError, match="bad.json: workflow graph is not valid JSON"):
        load_graph(bad)


def test_non_json_attributes_are_refused():
    g = sample_graph()
    g.nodes["a"]["when"] = object()
    with pytest.raises(GraphFormatError, match="not plain JSON"):
        graph_to_json(g)
    with pytest.raises(GraphFormatError, match="expected a networkx.DiGraph"):
        graph_to_json(nx.MultiDiGraph())
    with pytest.raises(GraphFormatError, match="must be a JSON object"):
        graph_from_json("x")
