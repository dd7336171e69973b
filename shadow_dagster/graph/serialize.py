"""Portable node-link JSON for workflow graphs, with a schema version (format: docs/graph-format.md).

A document is ``networkx.node_link_data(graph, edges="edges")`` plus two top-level keys:
``format`` (always ``FORMAT``) and ``schema_version``. Loading checks both, the node-link structure
and the required node/edge attributes, and raises GraphFormatError naming what is wrong.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx

from shadow_dagster.graph.reconstruct import DEP_TYPES
from shadow_dagster.errors import ShadowDagsterError

FORMAT = "shadow-dagster/workflow-graph"
SCHEMA_VERSION = 1
NODE_REQUIRED = {"task": str, "n": int, "executions": int, "cases": int}
EDGE_REQUIRED = {"type": str, "count": int, "cases": int, "share": (int, float)}


class GraphFormatError(ShadowDagsterError, ValueError):
    """A document is not a valid shadow-dagster workflow graph."""


def graph_to_json(graph: nx.DiGraph) -> dict:
    """The versioned node-link document of ``graph`` (a JSON-ready dict)."""
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise GraphFormatError(f"expected a networkx.DiGraph, got {type(graph).__name__}")
    data = nx.node_link_data(graph, edges="edges")
    doc = {"format": FORMAT, "schema_version": SCHEMA_VERSION, **data}
    try:
        json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise GraphFormatError(f"graph has an attribute that is not plain JSON: {exc}") from exc
    return doc


def graph_from_json(doc: dict) -> nx.DiGraph:
    """Validate a node-link document and rebuild the DiGraph."""
    if not isinstance(doc, dict):
        raise GraphFormatError(f"workflow graph document must be a JSON object, "
                               f"got {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise GraphFormatError(f"not a workflow graph: format is {doc.get('format')!r}, "
                               f"expected {FORMAT!r}")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise GraphFormatError(f"unsupported workflow graph schema_version {version!r}; "
                               f"this library reads version {SCHEMA_VERSION}")
    if doc.get("directed") is not True or doc.get("multigraph") is not False:
        raise GraphFormatError("workflow graph must be directed and not a multigraph")
    for key in ("nodes", "edges"):
        if not isinstance(doc.get(key), list):
            raise GraphFormatError(f"workflow graph document needs a {key!r} list")
    if not isinstance(doc.get("graph", {}), dict):
        raise GraphFormatError("'graph' attributes must be a JSON object")
    names = set()
    for i, node in enumerate(doc["nodes"]):
        if not isinstance(node, dict) or not isinstance(node.get("id"), str):
            raise GraphFormatError(f"nodes[{i}] must be an object with a string 'id'")
        _check_fields(node, NODE_REQUIRED, f"node {node['id']!r}")
        names.add(node["id"])
    for i, edge in enumerate(doc["edges"]):
        if not isinstance(edge, dict):
            raise GraphFormatError(f"edges[{i}] must be an object")
        for end in ("source", "target"):
            if edge.get(end) not in names:
                raise GraphFormatError(f"edges[{i}] {end} {edge.get(end)!r} is not a node")
        where = f"edge {edge['source']!r} -> {edge['target']!r}"
        _check_fields(edge, EDGE_REQUIRED, where)
        if edge["type"] not in DEP_TYPES:
            raise GraphFormatError(f"{where}: type {edge['type']!r} is not one of {DEP_TYPES}")
    data = {k: v for k, v in doc.items() if k not in ("format", "schema_version")}
    return nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")


def dumps_graph(graph: nx.DiGraph) -> str:
    return json.dumps(graph_to_json(graph), sort_keys=True, allow_nan=False)


def loads_graph(text: str | bytes) -> nx.DiGraph:
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GraphFormatError(f"workflow graph is not valid JSON: {exc}") from exc
    return graph_from_json(doc)


def save_graph(graph: nx.DiGraph, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(dumps_graph(graph), encoding="utf-8")
    return path


def load_graph(path: str | Path) -> nx.DiGraph:
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise GraphFormatError(f"cannot read workflow graph {path}: {exc}") from exc
    try:
        return loads_graph(text)
    except GraphFormatError as exc:
        raise GraphFormatError(f"{path}: {exc}") from exc


def _check_fields(item: dict, required: dict, where: str) -> None:
    for key, expected in required.items():
        value = item.get(key)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise GraphFormatError(f"{where}: {key!r} must be {_names(expected)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise GraphFormatError(f"{where}: {key!r} must be finite, got {value!r}")


def _names(expected) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(t.__name__ for t in types)
