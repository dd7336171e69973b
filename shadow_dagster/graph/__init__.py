"""Workflow-graph reconstruction, serialisation, rendering and pattern mining (pure, no Dagster)."""

from shadow_dagster.graph.patterns import execution_patterns, frequent_sequences, run_variants
from shadow_dagster.graph.reconstruct import build_workflow_graph, group_by_workflow
from shadow_dagster.graph.render import render_markdown, summary
from shadow_dagster.graph.serialize import dumps_graph, graph_from_json, graph_to_json, load_graph, loads_graph, save_graph

__all__ = [
    "build_workflow_graph", "group_by_workflow", "render_markdown", "summary", "execution_patterns",
    "frequent_sequences", "run_variants", "graph_to_json", "graph_from_json", "dumps_graph",
    "loads_graph", "save_graph", "load_graph",
]
