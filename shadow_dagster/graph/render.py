"""Markdown for Dagster metadata: node and edge tables plus a layered text diagram (no mermaid).

Cycles (retries, loops in event logs) are handled by ordering the condensation: the members of a
strongly connected component are listed together, in name order, and marked as a cycle; a
self-loop (retry) is marked with ``↻``.
"""

from __future__ import annotations

import networkx as nx

ARROWS = {"data": "──▶", "order": "┄┄▶", "trigger": "══▶"}


def summary(graph: nx.DiGraph) -> dict[str, int]:
    """Counts for numeric metadata: nodes, edges, edges per type, executed nodes, cases, runs."""
    counts = {"nodes": graph.number_of_nodes(), "edges": graph.number_of_edges()}
    for kind in ARROWS:
        counts[f"{kind}_edges"] = sum(1 for *_, d in graph.edges(data=True) if d.get("type") == kind)
    counts["executed_nodes"] = sum(1 for _, d in graph.nodes(data=True) if d.get("executions"))
    counts["cases"] = int(graph.graph.get("cases", 0))
    counts["runs"] = int(graph.graph.get("runs", 0))
    return counts


def node_order(graph: nx.DiGraph) -> list[list[str]]:
    """Layers of node names: topological generations of the condensation, cycles kept together."""
    condensed = nx.condensation(graph)
    layers = []
    for generation in nx.topological_generations(condensed):
        members = [sorted(condensed.nodes[c]["members"]) for c in generation]
        layers.append([name for group in sorted(members) for name in group])
    return layers


def render_markdown(graph: nx.DiGraph, title: str | None = None, max_rows: int = 200) -> str:
    """A GFM rendering: summary line, text diagram, node table and edge table."""
    if not isinstance(graph, nx.DiGraph):
        raise ValueError(f"render_markdown needs a networkx.DiGraph, got {type(graph).__name__}")
    cyclic = _cyclic_nodes(graph)
    lines = []
    if title:
        lines += [f"### {title}", ""]
    types = {t: sum(1 for *_, d in graph.edges(data=True) if d.get("type") == t) for t in ARROWS}
    lines.append(f"{graph.number_of_nodes()} steps, {graph.number_of_edges()} edges "
                 f"({', '.join(f'{n} {t}' for t, n in types.items())}) from "
                 f"{graph.graph.get('cases', 0)} cases")
    lines += ["", "```", *text_diagram(graph), "```", ""]
    lines += ["| layer | step | ran | cases | share | mean s | p50 s | p95 s | resources | critical |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    rows = 0
    for depth, layer in enumerate(node_order(graph)):
        for name in layer:
            if rows == max_rows:
                lines.append(f"| … | {graph.number_of_nodes() - rows} more | | | | | | | | |")
                break
            rows += 1
            d = graph.nodes[name]
            mark = " ↻" if graph.has_edge(name, name) else (" (cycle)" if name in cyclic else "")
            lines.append(
                f"| {depth} | `{_cell(name)}`{mark} | {d.get('executions', 0)} | {d.get('cases', 0)} "
                f"| {_pct(d.get('share'))} | {_num(d.get('mean'))} | {_num(d.get('p50'))} "
                f"| {_num(d.get('p95'))} | {_cell(_resources(d))} | {_critical(d)} |")
    lines += ["", "| from | to | type | taken | cases | share | bytes |", "|---|---|---|---|---|---|---|"]
    edges = sorted(graph.edges(data=True), key=lambda e: (e[2].get("type", ""), e[0], e[1]))
    for index, (source, target, d) in enumerate(edges):
        if index == max_rows:
            lines.append(f"| … | {len(edges) - index} more | | | | | |")
            break
        lines.append(f"| `{_cell(source)}` | `{_cell(target)}` | {d.get('type')} "
                     f"| {d.get('count', 0)} | {d.get('cases', 0)} | {_pct(d.get('share'))} "
                     f"| {_bytes(d.get('bytes'))} |")
    return "\n".join(lines) + "\n"


def text_diagram(graph: nx.DiGraph) -> list[str]:
    """Lines of a layered diagram: each layer lists its steps and their outgoing edges."""
    legend = "legend: " + "  ".join(f"{arrow} {kind}" for kind, arrow in ARROWS.items())
    lines = [legend]
    cyclic = _cyclic_nodes(graph)
    for depth, layer in enumerate(node_order(graph)):
        for name in layer:
            flags = " ↻" if graph.has_edge(name, name) else (" ⟲cycle" if name in cyclic else "")
            ran = graph.nodes[name].get("executions", 0)
            lines.append(f"L{depth} [{name}]{flags} ×{ran}")
            for _, target, d in sorted(graph.out_edges(name, data=True), key=lambda e: e[1]):
                if target == name:
                    continue
                arrow = ARROWS.get(d.get("type"), "──▶")
                lines.append(f"     {arrow} {target}  ({d.get('type')}, {d.get('count', 0)}×)")
    return lines


def _cyclic_nodes(graph: nx.DiGraph) -> set[str]:
    return {n for comp in nx.strongly_connected_components(graph) if len(comp) > 1 for n in comp}


def _resources(d: dict) -> str:
    parts = list(d.get("required_resources") or [])
    for key in ("pool", "concurrency_key"):
        if d.get(key):
            parts.append(f"{key}={d[key]}")
    for key in ("cpu", "memory"):
        if d.get(key) is not None:
            parts.append(f"{key}={d[key]}")
    return ", ".join(parts)


def _critical(d: dict) -> str:
    value = d.get("critical")
    return "" if value is None else ("yes" if value else "no")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(value) -> str:
    return "" if value is None else f"{value:.3f}"


def _pct(value) -> str:
    return "" if value is None else f"{value:.0%}"


def _bytes(value) -> str:
    if value is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""
