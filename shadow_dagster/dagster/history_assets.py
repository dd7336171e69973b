"""Assets that learn from the signal store: workflow graphs, execution patterns, fingerprints.

All three read the signals of the rolling window, turn them into cases (one per workflow
instance, see shadow_dagster.signals.cases) and write their results under
the storage's folders (`ShadowStorage`: node-link JSON graphs, fingerprint files). They are
reported assets (see shadow_dagster.dagster.reported): non-executable specs whose metadata an op
of the refit job logs, so they work whatever IO manager the user configured and no user job
selects them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import AssetKey, AssetSpec, MetadataValue
from dagster import TableColumn, TableRecord, TableSchema

from shadow_dagster.dagster.fingerprints import fingerprint_path, load_fingerprint
from shadow_dagster.dagster.reported import Reported, reported_asset
from shadow_dagster.store.layout import ShadowStorage

# The learning code (networkx, hmmlearn) loads when a refit runs, not with the code location.
if TYPE_CHECKING:
    from shadow_dagster.cases import Case
    from shadow_dagster.fingerprint import Fingerprint
    from shadow_dagster.store.signal_store import SignalStore

GROUP = "shadow_dagster"
SIGNALS_KEY = AssetKey("shadow_signals")
DAY_S = 86_400.0

signals_spec = AssetSpec(
    SIGNALS_KEY,
    group_name=GROUP,
    description="Run and step signals ingested by shadow_signal_sensor into the signal store.",
    kinds={"sql"},
)


def window_cases(store: SignalStore, window_days: float, *, executed_only: bool,
                 now_s: float | None = None) -> dict[str, list[Case]]:
    """Cases of the rolling window, grouped by workflow."""
    from shadow_dagster.signals.cases import cases_from_signals

    now_s = time.time() if now_s is None else now_s
    since_ms = int((now_s - window_days * DAY_S) * 1000)
    cases = cases_from_signals(store.signals(since_ms=since_ms), executed_only=executed_only)
    grouped: dict[str, list[Case]] = {}
    for case in cases:
        grouped.setdefault(case.workflow, []).append(case)
    return grouped


def _table(rows: list[dict], columns: list[str]) -> MetadataValue:
    schema = TableSchema(columns=[TableColumn(c, "float" if isinstance(rows[0].get(c), float) else
                                              "int" if isinstance(rows[0].get(c), int) else "string")
                                  for c in columns]) if rows else TableSchema(columns=[TableColumn(c) for c in columns])
    return MetadataValue.table(records=[TableRecord({c: r.get(c) for c in columns}) for r in rows], schema=schema)


def _job_definitions(context, fallback: Callable[[], list]) -> list:
    """Jobs of the code location (from the run's repository, else the user definitions given)."""
    try:
        return list(context.repository_def.get_all_jobs())
    except Exception:  # noqa: BLE001 - in-process runs carry no repository definition
        return fallback()


def build_history_assets(*, window_days: float, jobs: Callable[[], list],
                         storage: ShadowStorage | None = None) -> list[Reported]:
    """The three history assets; `jobs()` lists the user's job definitions for data edges. They
    write fingerprints to `storage`'s fingerprint_dir and graphs to graphs/ beside it."""
    storage = ShadowStorage() if storage is None else storage

    def workflow_graph(context) -> dict:
        from shadow_dagster.dagster.job_graph import definition_graph
        from shadow_dagster.graph import build_workflow_graph, render_markdown, save_graph, summary

        grouped = window_cases(context.resources.shadow_signal_store.get_store(), window_days, executed_only=False)
        job_defs = {j.name: j for j in _job_definitions(context, jobs)}
        out = Path(storage.location("fingerprint_dir")).parent / "graphs"
        out.mkdir(parents=True, exist_ok=True)
        metadata: dict = {"workflows": len(grouped), "window_days": window_days}
        sections, rows = [], []
        for workflow, cases in sorted(grouped.items()):
            edges, info = [], {}
            for job_name in sorted({e.job for c in cases for e in c.events if e.job}):
                if job_name in job_defs:
                    e, i = definition_graph(job_defs[job_name], prefix=f"{job_name}/")
                    edges += e
                    info.update(i)
            graph = build_workflow_graph(cases, edges, info)
            path = out / f"{fingerprint_path(workflow, out).stem}.json"
            save_graph(graph, path)
            counts = summary(graph)
            rows.append({"workflow": workflow, **counts, "path": str(path)})
            metadata[f"{workflow}/nodes"] = counts["nodes"]
            metadata[f"{workflow}/edges"] = counts["edges"]
            sections.append(render_markdown(graph, title=workflow, max_rows=60))
        metadata["graphs"] = _table(rows, ["workflow", "nodes", "edges", "data_edges", "order_edges",
                                           "trigger_edges", "cases", "runs", "path"])
        metadata["diagram"] = MetadataValue.md("\n\n".join(sections) or "no workflow history in the window yet")
        metadata["directory"] = MetadataValue.path(str(out))
        return metadata

    def execution_patterns_metadata(context) -> dict:
        from shadow_dagster.graph import execution_patterns
        from shadow_dagster.graph.patterns import markdown_table

        grouped = window_cases(context.resources.shadow_signal_store.get_store(), window_days, executed_only=False)
        cases = [c for group in grouped.values() for c in group]
        patterns = execution_patterns(cases) if cases else {"sequences": [], "variants": []}
        seqs, variants = patterns["sequences"], patterns["variants"]
        return {
            "workflows": len(grouped),
            "instances": len(cases),
            "frequent_sequences": len(seqs),
            "variants": len(variants),
            "sequences_table": _table(seqs[:200], ["workflow", "sequence", "n", "cases", "support"]),
            "variants_table": _table(variants[:100], ["workflow", "variant", "length", "count", "share"]),
            "variants_md": MetadataValue.md(markdown_table(variants, max_rows=30) if variants else "no runs yet"),
        }

    def workflow_fingerprint(context) -> dict:
        from shadow_dagster.graph.patterns import markdown_table

        grouped = window_cases(context.resources.shadow_signal_store.get_store(), window_days, executed_only=True)
        directory = storage.location("fingerprint_dir")
        metadata: dict = {"workflows": len(grouped), "window_days": window_days}
        rows = []
        for workflow, cases in sorted(grouped.items()):
            fitted, refit = fit_or_reuse(workflow, cases, window_days, directory)
            s = fitted.summary()
            held = s["heldout"]
            row = {"workflow": workflow, "instances": s["instances"], "predictor": s["predictor"] or "-",
                   "refit": "yes" if refit else "no (history unchanged)", "reason": s["reason"] or ""}
            for name in ("fingerprint", "markov1", "kgram", "hmm"):
                entry = held.get(name) if isinstance(held, dict) else None
                for k in ("top1", "top3"):
                    value = entry.get(k) if isinstance(entry, dict) else None
                    row[f"{name}_{k}"] = value
                    if value is not None:
                        metadata[f"{workflow}/{name}_{k}"] = float(value)
            rows.append(row)
            metadata[f"{workflow}/instances"] = s["instances"]
        cols = ["workflow", "instances", "predictor", "fingerprint_top1", "fingerprint_top3", "markov1_top1",
                "kgram_top1", "hmm_top1", "refit", "reason"]
        metadata["accuracy"] = _table(rows, cols)
        metadata["accuracy_md"] = MetadataValue.md(
            markdown_table(rows, columns=cols) if rows else "no workflow history in the window yet"
        )
        metadata["directory"] = MetadataValue.path(str(directory))
        return metadata

    store = ["shadow_signal_store"]
    return [
        reported_asset(history_spec("workflow_graph", "networkx", "Per-workflow DAG from job definitions and "
                                    "observed history (node-link JSON)."), workflow_graph, resource_keys=store),
        reported_asset(history_spec("execution_patterns", "pandas", "Frequent step sequences (n-grams with "
                                    "support) and run variants per workflow."), execution_patterns_metadata,
                       resource_keys=store),
        reported_asset(history_spec("workflow_fingerprint", "hmmlearn", "Per-workflow next-step model (Markov "
                                    "with backoff, HMM, durations) with held-out accuracy.",
                                    deps=[SIGNALS_KEY, AssetKey("workflow_graph")]),
                       workflow_fingerprint, resource_keys=store),
    ]


def history_spec(name: str, kind: str, description: str, *, deps=(SIGNALS_KEY,)) -> AssetSpec:
    """The spec of a reported asset in the `shadow_dagster` group."""
    return AssetSpec(AssetKey(name), group_name=GROUP, deps=list(deps), description=description, kinds={kind})


def fit_or_reuse(workflow: str, cases: list[Case], window_days: float,
                 root: str | None = None) -> tuple[Fingerprint, bool]:
    """(fingerprint, refitted): the stored one (in `root`, default the fingerprint directory) when
    it was fitted on exactly this history."""
    from shadow_dagster.fingerprint import Fingerprint

    stored = load_fingerprint(workflow, root)
    fitted = Fingerprint.fit(cases, window_days=window_days, k=3, seed=0, previous=stored)
    if fitted is stored:
        return stored, False
    path = fingerprint_path(workflow, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fitted.save(path)
    return fitted, True
