"""Markdown rendering: layered diagram, tables, cycles and retries."""

from __future__ import annotations

import networkx as nx
import pytest

from shadow_dagster.cases import Case, Event
from shadow_dagster.graph.reconstruct import build_workflow_graph
from shadow_dagster.graph.render import node_order, render_markdown, summary, text_diagram

from tests.core.test_graph_reconstruct import ETL_EDGES, etl_cases


def etl_graph():
    return build_workflow_graph(etl_cases(), ETL_EDGES,
                                {"load": {"required_resources": ["warehouse"], "pool": "db",
                                          "critical": True}})


def test_diagram_layers_follow_topological_generations():
    g = etl_graph()
    assert node_order(g) == [["extract"], ["transform_a", "transform_b"], ["load"], ["notify"]]
    assert text_diagram(g)[1:] == [
        "L0 [extract] ×3",
        "     ──▶ transform_a  (data, 2×)",
        "     ──▶ transform_b  (data, 2×)",
        "L1 [transform_a] ×2",
        "     ──▶ load  (data, 2×)",
        "L1 [transform_b] ↻ ×2",
        "     ──▶ load  (data, 1×)",
        "L2 [load] ×3",
        "     ┄┄▶ notify  (order, 1×)",
        "L3 [notify] ×1",
    ]


def test_markdown_has_summary_code_block_and_tables():
    md = render_markdown(etl_graph(), title="etl")
    assert md.startswith("### etl\n\n5 steps, 6 edges (4 data, 2 order, 0 trigger) from 3 cases\n")
    assert md.count("```") == 2 and "mermaid" not in md
    assert "| 2 | `load` | 3 | 3 | 100% | 1.333 | 1.000 | 1.900 | warehouse, pool=db | yes |" in md
    assert "| `extract` | `transform_a` | data | 2 | 2 | 67% | 200 B |" in md
    assert "| `transform_b` | `transform_b` | order | 1 | 1 | 33% |  |" in md


def test_cycles_from_event_logs_render_together():
    loop = [Case("x", "log", [Event("a", 0, 1), Event("b", 1, 2), Event("a", 2, 3), Event("c", 3, 4)])]
    g = build_workflow_graph(loop)
    assert node_order(g) == [["a", "b"], ["c"]]
    assert "L0 [a] ⟲cycle ×2" in text_diagram(g)
    assert "| 0 | `b` (cycle) | 1 | 1 | 100% |" in render_markdown(g)


def test_long_tables_are_cut_and_bad_input_is_named():
    g = nx.DiGraph()
    nx.add_path(g, [f"s{i:02d}" for i in range(5)], type="order", count=1, cases=1, share=1.0)
    md = render_markdown(g, max_rows=2)
    assert "| … | 3 more |" in md and "| … | 2 more |" in md
    with pytest.raises(ValueError, match="needs a networkx.DiGraph, got dict"):
        render_markdown({})


def test_summary_counts_for_metadata():
    assert summary(etl_graph()) == {"nodes": 5, "edges": 6, "data_edges": 4, "order_edges": 2,
                                    "trigger_edges": 0, "executed_nodes": 5, "cases": 3, "runs": 3}
