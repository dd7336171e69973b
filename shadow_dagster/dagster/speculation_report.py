"""The `speculation_report` asset: speculation totals as numeric metadata (plotted over time by the
Dagster UI), what was predicted and decided per live workflow instance, and recent shadow runs.
A reported asset (see `reported.py`): the speculative sensor logs it when something changed, and
the refit job's `speculation_report` op logs it too."""


import json
from typing import TYPE_CHECKING

from dagster import AssetKey, AssetSpec, MetadataValue, RunsFilter

from shadow_dagster.dagster.reported import Reported, reported_asset
from shadow_dagster.store.outcomes import RESOLVED, policy_outcomes, read_outcomes
from shadow_dagster.speculation.policy import PolicyConfig, PolicyState
from shadow_dagster.store.layout import ShadowStorage
from shadow_dagster.tags import ACTIVITY_TAG, PARENT_TAG, PREDICTION_TAG, PROBABILITY_TAG, SHADOW_TAG

if TYPE_CHECKING:
    from shadow_dagster.store.signal_store import SignalStore


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

    Shadow runs deleted after the retention period (see `shadow_dagster.dagster.purge`) are listed
    from their outcome rows with status "purged", so nothing disappears from the user's view."""
    resolved = {r.prediction_id: r for r in records if r.stage in RESOLVED}

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


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _clock(ts_s: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts_s, tz=timezone.utc).strftime("%H:%M:%S")


def _outcome(pid: str, resolved: dict, launched: set) -> str:
    out = resolved.get(pid)
    if out is None:
        return "shadow run in flight" if pid in launched else "-"
    if out.stage == "hit":
        return f"hit: reused, {out.seconds_saved:.1f} s saved"
    return f"miss: {out.seconds_wasted:.1f} s wasted" + (f" ({out.reason})" if out.reason else "")


def instances_markdown(decisions, records, shadow_runs: dict[str, str], *, instances: int = 10) -> str:
    """Per live workflow instance (newest first): each predicted step with its probability and ETA,
    whether it was pre-executed (with the shadow run) and why, and the outcome in seconds."""
    from shadow_dagster.speculation.decisions import PRE_EXECUTED, latest_by_instance

    grouped = latest_by_instance(decisions, instances=instances)
    if not grouped:
        return "_no predictions yet_"
    resolved = {r.prediction_id: r for r in records if r.stage in RESOLVED}
    launched = {r.prediction_id for r in records if r.stage == "launched"}
    run_of = dict(shadow_runs)
    run_of.update({r.prediction_id: r.shadow_run_id for r in records if r.shadow_run_id})
    parts = []
    for key, rows in grouped.items():
        updated = max(d.ts_ms for d in rows) / 1000
        parts.append(f"### `{_cell(key)}` ({_cell(rows[0].workflow)}), last predicted {_clock(updated)} UTC\n\n"
                     "| predicted step | p | ETA | decision | why | outcome |\n|---|---|---|---|---|---|")
        for d in rows:
            eta = "unknown" if d.eta_s is None else f"{d.eta_s:.0f} s (at {_clock(d.ts_ms / 1000 + d.eta_s)})"
            decision = d.decision
            run_id = run_of.get(d.prediction_id)
            if d.decision == PRE_EXECUTED and run_id:
                decision += f" in [{run_id[:8]}](/runs/{run_id})"
            parts.append(f"| {_cell(d.activity)} | {d.probability:.2f} | {eta} | {decision} | {_cell(d.reason)} | "
                         f"{_cell(_outcome(d.prediction_id, resolved, launched))} |")
        parts.append("")
    return "\n".join(parts).strip()


def report_metadata(instance, store: "SignalStore", policy: PolicyConfig | None = None,
                    window_days: float = 30.0, now: float | None = None) -> dict:
    """The report's metadata: totals, recent shadow runs, and what was predicted and decided per
    live instance."""
    import time

    since_ms = int(((time.time() if now is None else now) - window_days * 86400) * 1000)
    records = read_outcomes(store, since_ms=since_ms)
    totals = speculation_totals(records, policy)
    rows = shadow_run_rows(instance, records)
    meta = {k: (MetadataValue.int(v) if isinstance(v, int) else MetadataValue.float(float(v)))
            for k, v in totals.items()}
    runs = {r["prediction"]: r["run_id"] for r in rows if r["prediction"]}
    meta["live_instances"] = MetadataValue.md(instances_markdown(store.decisions(since_ms=since_ms), records, runs))
    meta["recent_shadow_runs"] = MetadataValue.md(markdown_table(rows))
    meta["totals_json"] = MetadataValue.json(json.loads(json.dumps(totals)))
    return meta


REPORT_KEY = AssetKey("speculation_report")


def build_speculation_report(*, storage: ShadowStorage | None = None, policy: PolicyConfig | None = None,
                             window_days: float = 30.0) -> Reported:
    """The report (its spec and the op that logs it), read from `storage`'s signal store. The
    speculative sensor also logs it, when its decisions or outcomes changed (`report_interval_s`),
    so it refreshes itself."""
    storage = ShadowStorage() if storage is None else storage

    def _report(context) -> dict:
        return report_metadata(context.instance, storage.signal_store(), policy, window_days)

    spec = AssetSpec(REPORT_KEY, group_name="shadow_dagster", deps=[AssetKey("shadow_signals")],
                     description="shadow-dagster speculation: per live workflow instance, the predicted "
                                 "steps and what was pre-executed and why; totals of hits, misses, seconds "
                                 "saved and wasted")
    return reported_asset(spec, _report)
