"""Rebuild a workflow's DAG from its definition and its observed history (pure, no Dagster).

Nodes are activities (step keys). Each node carries its task name, the resource allocation given in
``node_info`` (required resources, pool / concurrency key, cpu / memory, critical flag) and
execution-time statistics over the attempts that finished, successfully or not (n, mean, p50,
p95); running and canceled attempts count as executions but not in the statistics.

Edges and how they are counted (see docs/graph-format.md):

- ``data``: from ``definition_edges``. Taken once for each executed attempt of the target whose
  source executed and finished no later than the attempt started, in the same run.
- ``order``: observed only. An executed attempt whose start no data edge explains (no data
  upstream executed before it in the same run) is linked to its *immediate predecessor*: the
  executed attempt of the same run with the latest end not after its start (ties: the later
  start, then the later event in input order). Overlapping attempts are concurrent, never linked.
  A retry (the immediate predecessor is the same activity) is always recorded, as a self-loop.
- ``trigger``: across runs of one case. Runs are ordered by their first start; consecutive runs
  A, B link the last-finished step of A to the first-started step of B.

A step is *executed* unless its status is ``skipped``: skipped steps become nodes (so a branch not
taken stays visible) but add no statistics, no executions and no edges. When the same pair is
linked by
several kinds, the edge keeps the strongest type (data > trigger > order) and one count.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Iterable

import networkx as nx
import numpy as np

from shadow_dagster.cases import Case, Event

STATUSES = frozenset({"success", "failure", "skipped", "canceled", "running"})
TIMED = frozenset({"success", "failure"})   # attempts whose duration is a full execution time
DEP_TYPES = ("data", "trigger", "order")   # strongest first
RESERVED = frozenset({"task", "n", "mean", "p50", "p95", "min", "max", "executions", "cases",
                      "share", "statuses", "executors", "intensity_mean"})
NODE_INFO_KEYS = {
    "op": str, "job": str, "required_resources": list, "pool": str, "concurrency_key": str,
    "tags": dict, "critical": bool, "cpu": (int, float, str), "memory": (int, float, str),
    "asset_keys": list, "outputs": dict,
}


def executed(event: Event) -> bool:
    """True when the step actually ran (every status but ``skipped``)."""
    return event.status != "skipped"


def duration_stats(durations: Iterable[float]) -> dict:
    """n, mean, p50, p95 (linear interpolation, numpy's default), min, max; None when n == 0."""
    values = np.asarray(list(durations), dtype=float)
    if values.size == 0:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "min": None, "max": None}
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def build_workflow_graph(
    cases: list[Case],
    definition_edges: list[tuple[str, str]] | None = None,
    node_info: dict[str, dict] | None = None,
) -> nx.DiGraph:
    """Merge the definition (data edges, node info) with the history of ``cases`` of one workflow.

    Raises ValueError naming the offending case, event, edge or node when the input is malformed.
    """
    workflow = _validate_cases(cases)
    data_edges = _validate_edges(definition_edges or [])
    info = _validate_node_info(node_info or {})

    graph = nx.DiGraph(workflow=workflow, cases=len(cases), runs=0)
    for name in sorted(set(info) | {n for edge in data_edges for n in edge}):
        _add_node(graph, name)
    for source, target in data_edges:
        graph.add_edge(source, target, type="data")

    taken: dict[tuple[str, str], dict] = defaultdict(lambda: {"count": 0, "cases": set()})
    kinds: dict[tuple[str, str], str] = {edge: "data" for edge in data_edges}
    events_by_activity: dict[str, list[Event]] = defaultdict(list)
    cases_by_activity: dict[str, set[str]] = defaultdict(set)

    def take(source: str, target: str, kind: str, case_id: str) -> None:
        previous = kinds.get((source, target))
        if previous is None or DEP_TYPES.index(kind) < DEP_TYPES.index(previous):
            kinds[(source, target)] = kind
        taken[(source, target)]["count"] += 1
        taken[(source, target)]["cases"].add(case_id)

    upstream = defaultdict(set)
    for source, target in data_edges:
        upstream[target].add(source)

    for case in cases:
        for event in case.events:
            _add_node(graph, event.activity)
            events_by_activity[event.activity].append(event)
            if executed(event):
                cases_by_activity[event.activity].add(case.case_id)
        runs = _runs(case)
        graph.graph["runs"] += len(runs)
        for run_events in runs:
            finished = _Finished(run_events)
            for event in run_events:
                explained = False
                for source in sorted(upstream[event.activity]):
                    if finished.first_end.get(source, math.inf) <= event.start:
                        take(source, event.activity, "data", case.case_id)
                        explained = True
                pred = finished.predecessor(event)
                if pred is not None and (not explained or pred.activity == event.activity):
                    take(pred.activity, event.activity, "order", case.case_id)
        for run_a, run_b in zip(runs, runs[1:]):
            last = max(enumerate(run_a), key=lambda ie: (_end_or_start(ie[1]), ie[1].start, ie[0]))[1]
            take(last.activity, run_b[0].activity, "trigger", case.case_id)

    mean_bytes = {}
    for activity, events in events_by_activity.items():
        sizes = [e.output_bytes for e in events if executed(e) and e.output_bytes is not None]
        mean_bytes[activity] = float(np.mean(sizes)) if sizes else None
        _set_history(graph.nodes[activity], events, len(cases_by_activity[activity]), len(cases))

    for (source, target), kind in kinds.items():
        stats = taken.get((source, target), {"count": 0, "cases": set()})
        graph.add_edge(source, target, type=kind, count=stats["count"],
                       cases=len(stats["cases"]),
                       share=(len(stats["cases"]) / len(cases)) if cases else 0.0,
                       bytes=mean_bytes.get(source))
    for name, attrs in info.items():
        graph.nodes[name].update(attrs)
        outputs = attrs.get("outputs") or {}
        for output, targets in outputs.items():
            for target in targets:
                if graph.has_edge(name, target) and graph.edges[name, target]["type"] == "data":
                    outs = graph.edges[name, target].setdefault("outputs", [])
                    outs[:] = sorted({*outs, output})
    return graph


def group_by_workflow(cases: list[Case]) -> dict[str, list[Case]]:
    """Split cases by their workflow name, keeping input order inside each group."""
    groups: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        groups[case.workflow].append(case)
    return dict(groups)


def _add_node(graph: nx.DiGraph, name: str) -> None:
    if name not in graph:
        graph.add_node(name, task=name.rsplit("/", 1)[-1], executions=0, cases=0, share=0.0,
                       statuses={}, **duration_stats([]))


def _set_history(attrs: dict, events: list[Event], n_cases: int, total_cases: int) -> None:
    ran = [e for e in events if executed(e)]
    attrs.update(duration_stats(e.duration for e in ran
                                if e.status in TIMED and e.duration is not None))
    attrs["executions"] = len(ran)
    attrs["cases"] = n_cases
    attrs["share"] = n_cases / total_cases if total_cases else 0.0
    attrs["statuses"] = dict(sorted(Counter(e.status for e in events).items()))
    executors = sorted({e.resource for e in ran if e.resource})
    if executors:
        attrs["executors"] = executors
    jobs = Counter(e.job for e in events if e.job)
    if jobs:
        attrs["job"] = jobs.most_common(1)[0][0]
    intensities = [e.intensity for e in ran if e.intensity is not None]
    if intensities:
        attrs["intensity_mean"] = float(np.mean(intensities))


def _runs(case: Case) -> list[list[Event]]:
    """Executed events grouped by run id (None = one run), each sorted by start; runs by first start."""
    grouped: dict[str | None, list[Event]] = {}
    for event in case.events:
        if executed(event):
            grouped.setdefault(event.run_id, []).append(event)
    runs = [sorted(events, key=lambda e: e.start) for events in grouped.values()]
    return sorted(runs, key=lambda events: events[0].start)


class _Finished:
    """The finished attempts of one run, indexed by end time (O(log n) predecessor look-up)."""

    def __init__(self, run_events: list[Event]):
        self.by_end = sorted(((e.end, e.start, i, e) for i, e in enumerate(run_events)
                              if e.end is not None), key=lambda x: x[:3])
        self.ends = [item[0] for item in self.by_end]
        self.first_end: dict[str, float] = {}
        for end, _, _, e in self.by_end:
            self.first_end.setdefault(e.activity, end)

    def predecessor(self, event: Event) -> Event | None:
        """The attempt with the latest (end, start, input position) whose end <= event.start."""
        k = bisect.bisect_right(self.ends, event.start) - 1
        while k >= 0 and self.by_end[k][3] is event:
            k -= 1
        return self.by_end[k][3] if k >= 0 else None


def _end_or_start(event: Event) -> float:
    return event.start if event.end is None else event.end


def _validate_cases(cases) -> str | None:
    if not isinstance(cases, list):
        raise ValueError(f"cases must be a list of Case, got {type(cases).__name__}")
    workflows, seen = set(), set()
    for i, case in enumerate(cases):
        if not isinstance(case, Case):
            raise ValueError(f"cases[{i}] must be a Case, got {type(case).__name__}")
        if case.case_id in seen:
            raise ValueError(f"cases[{i}]: case_id {case.case_id!r} appears twice; "
                             "merge the events of one workflow instance into one Case")
        seen.add(case.case_id)
        workflows.add(case.workflow)
        for j, event in enumerate(case.events):
            where = f"case {case.case_id!r} event {j}"
            if not isinstance(event, Event):
                raise ValueError(f"{where} must be an Event, got {type(event).__name__}")
            if not isinstance(event.activity, str) or not event.activity:
                raise ValueError(f"{where}: activity must be a non-empty string")
            if event.status not in STATUSES:
                raise ValueError(f"{where} ({event.activity}): unknown status {event.status!r}; "
                                 f"expected one of {sorted(STATUSES)}")
            for name in ("start", "end"):
                value = getattr(event, name)
                if value is None and name == "end":
                    continue
                if not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"{where} ({event.activity}): {name} must be a finite "
                                     f"number of epoch seconds, got {value!r}")
            if event.end is not None and event.end < event.start:
                raise ValueError(f"{where} ({event.activity}): end {event.end} is before "
                                 f"start {event.start}")
    if len(workflows) > 1:
        raise ValueError(f"cases mix several workflows {sorted(map(str, workflows))}; "
                         "build one graph per workflow (see group_by_workflow)")
    return next(iter(workflows), None)


def _validate_edges(edges) -> list[tuple[str, str]]:
    result = []
    for i, edge in enumerate(edges):
        if (not isinstance(edge, (tuple, list)) or len(edge) != 2
                or not all(isinstance(n, str) and n for n in edge)):
            raise ValueError(f"definition_edges[{i}] must be a (source, target) pair of "
                             f"non-empty strings, got {edge!r}")
        if tuple(edge) not in result:
            result.append(tuple(edge))
    return result


def _validate_node_info(node_info) -> dict[str, dict]:
    if not isinstance(node_info, dict):
        raise ValueError(f"node_info must be a dict of step key -> dict, "
                         f"got {type(node_info).__name__}")
    for name, attrs in node_info.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"node_info key {name!r} must be a non-empty step key")
        if not isinstance(attrs, dict):
            raise ValueError(f"node_info[{name!r}] must be a dict, got {type(attrs).__name__}")
        reserved = sorted(RESERVED & set(attrs))
        if reserved:
            raise ValueError(f"node_info[{name!r}] sets {reserved}, which history computes")
        for key, expected in NODE_INFO_KEYS.items():
            value = attrs.get(key)
            if value is not None and not isinstance(value, expected):
                raise ValueError(f"node_info[{name!r}][{key!r}] has type "
                                 f"{type(value).__name__}; expected {expected}")
    return {name: dict(attrs) for name, attrs in node_info.items()}
