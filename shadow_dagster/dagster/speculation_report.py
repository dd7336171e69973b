"""The `speculation_report` asset: speculation totals as numeric metadata (plotted over time by the
Dagster UI) and a markdown table of recent shadow runs. A reported asset (see `reported.py`): the
refit job's `speculation_report` op logs it."""


import json

from dagster import AssetKey, AssetSpec, MetadataValue, RunsFilter

from shadow_dagster.dagster.reported import Reported, reported_asset
from shadow_dagster.dagster.rollback import ACTIVITY_TAG, policy_outcomes, read_outcomes
from shadow_dagster.speculation.policy import PolicyConfig, PolicyState
from shadow_dagster.store.engine import default_url
from shadow_dagster.store.signal_store import SignalStore
from shadow_dagster.tags import PARENT_TAG, PREDICTION_TAG, PROBABILITY_TAG, SHADOW_TAG


def speculation_totals(records, policy: PolicyConfig | None = None) -> dict:
    """Totals over outcome records: counts, hit rate, seconds saved/wasted, waste share, threshold."""
    by_stage: dict[str, set] = {}
    saved = wasted = 0.0
    for r in records:
        by_stage.setdefault(r.stage, set()).add(r.prediction_id)
        saved += r.seconds_saved if r.stage == "hit" else 0.0
        wasted += r.seconds_wasted if r.stage == "miss" else 0.0
    hits, misses = len(by_stage.get("hit", ())), len(by_stage.get("miss", ()))
    state = PolicyState.from_outcomes(policy_outcomes(records), policy or PolicyConfig())
    return {
        "predictions": len(by_stage.get("predicted", set()) | by_stage.get("launched", set())),
        "launched": len(by_stage.get("launched", ())),
        "hits": hits, "misses": misses,
        "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
        "seconds_saved": round(saved, 3), "seconds_wasted": round(wasted, 3),
        "waste_share": wasted / (saved + wasted) if saved + wasted else 0.0,
        "policy_threshold": round(state.threshold(1.0, 1.0), 4),
        "policy_calibration": round(state.calibration, 4),
    }


def shadow_run_rows(instance, records, limit: int = 20) -> list[dict]:
    """Recent shadow runs with their state and outcome, newest first.

    Shadow runs purged from Dagster after settlement (see `shadow_dagster.dagster.purge`) are listed
    from their outcome rows with status "purged", so nothing disappears from the user's view."""
    resolved = {r.prediction_id: r for r in records if r.stage in ("hit", "miss")}

    def row(run_id, status, parent, activity, probability, pid):
        out = resolved.get(pid)
        return {"run_id": run_id, "status": status, "parent": parent, "activity": activity,
                "probability": probability, "prediction": pid, "outcome": out.stage if out else "pending",
                "seconds": (out.seconds_saved if out and out.stage == "hit" else
                            out.seconds_wasted if out else None),
                "reason": out.reason if out else None}

    listed = []   # (created epoch s, row)
    for rec in instance.get_run_records(filters=RunsFilter(tags={SHADOW_TAG: "true"}), limit=limit):
        run = rec.dagster_run
        listed.append((rec.create_timestamp.timestamp(), row(
            run.run_id, run.status.value, run.tags.get(PARENT_TAG), run.tags.get(ACTIVITY_TAG),
            run.tags.get(PROBABILITY_TAG), run.tags.get(PREDICTION_TAG, ""))))
    # runs named by outcome rows (resolved or purged) that Dagster no longer has: purged
    named: dict[str, tuple[float, object]] = {}
    launched = {r.prediction_id: r.ts_ms / 1000 for r in records if r.stage == "launched"}
    for r in records:
        if r.shadow_run_id and r.stage in ("hit", "miss", "purged"):
            ts = launched.get(r.prediction_id, r.ts_ms / 1000)
            if r.shadow_run_id not in named or r.stage == "purged":
                named[r.shadow_run_id] = (ts, r)
    shown = {row_["run_id"] for _, row_ in listed}
    missing = [rid for rid in named if rid not in shown]
    if missing:
        present = {rec.dagster_run.run_id for rec in instance.get_run_records(filters=RunsFilter(run_ids=missing))}
        for rid in missing:
            if rid in present:
                continue   # still in Dagster, just beyond the limit
            ts, r = named[rid]
            prob = f"{r.probability:.6f}" if r.probability is not None else None
            listed.append((ts, row(rid, "purged", r.workflow_key, r.activity, prob, r.prediction_id)))
    listed.sort(key=lambda t: t[0], reverse=True)
    return [r for _, r in listed[:limit]]


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "_no shadow runs yet_"
    head = "| run | status | workflow key | activity | p | outcome | s saved/wasted |\n|---|---|---|---|---|---|---|\n"
    return head + "\n".join(
        f"| {r['run_id'][:8]} | {r['status']} | {r['parent']} | {r['activity']} | {r['probability']} | "
        f"{r['outcome']} | {'' if r['seconds'] is None else round(r['seconds'], 3)} |" for r in rows)


def build_speculation_report(*, signal_store_url: str | None = None, policy: PolicyConfig | None = None,
                             window_days: float = 30.0, name: str = "speculation_report") -> Reported:
    """The report (its spec and the op that logs it)."""

    def _report(context) -> dict:
        store = SignalStore(signal_store_url or default_url())
        try:
            import time

            records = read_outcomes(store, since_ms=int((time.time() - window_days * 86400) * 1000))
        finally:
            store.dispose()
        totals = speculation_totals(records, policy)
        rows = shadow_run_rows(context.instance, records)
        meta = {k: (MetadataValue.int(v) if isinstance(v, int) else MetadataValue.float(float(v)))
                for k, v in totals.items()}
        meta["recent_shadow_runs"] = MetadataValue.md(markdown_table(rows))
        meta["totals_json"] = MetadataValue.json(json.loads(json.dumps(totals)))
        return meta

    spec = AssetSpec(AssetKey(name), group_name="shadow_dagster", deps=[AssetKey("shadow_signals")],
                     description="shadow-dagster speculation totals: predictions, hits, misses, seconds "
                                 "saved and wasted")
    return reported_asset(spec, _report)
