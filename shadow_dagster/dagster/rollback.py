"""Rollback of shadow runs: settle each launched prediction, cancel and clean up the misses.

Outcome rows are `shadow_dagster.store.outcomes`; live instances `shadow_dagster.dagster.live_groups`.

`resolve_shadow_runs` settles launched predictions: a **hit** when the live run materialised the
predicted asset with `shadow_dagster/reused_from` = the shadow run; a **miss** when the live instance
ran the step itself, took another branch (passed the predicted position by `divergence_slack` steps
without it), ended without it, failed or was cancelled, when the shadow run failed, or when the
prediction outlived its TTL. On a miss in-flight shadow runs are cancelled
(`run_coordinator.cancel_run`; runs from `execute_in_process` cannot be cancelled) and their
outputs deleted. Live runs are never touched.

A shadow run is a run of the runner job (`shadow_dagster.dagster.shadow_runner`): its assets
never reach the live catalog, so it stays on its run page for inspection. Once settled, finished
and older than the retention period (`retention_s`, default a day), it is deleted
(`shadow_dagster.dagster.purge.purge_shadow_run`). `purge="all"` (default) deletes hits and misses,
`"misses"` keeps hit runs, `"off"` keeps every shadow run. A "purged" outcome row keeps the run
id, activity and outcome listed (`shadow-dagster shadow list`).
"""

from __future__ import annotations

import json
import time
from datetime import timezone
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus, RunsFilter

from shadow_dagster.dagster.live_groups import GroupView, LiveViews
from shadow_dagster.speculation.config import PURGE_MODES
from shadow_dagster.speculation.settle import abandoned, expired
from shadow_dagster.store.outcomes import RESOLVED, OutcomeRecord, read_outcomes, record_outcomes
from shadow_dagster.tags import (
    ACTIVITY_TAG,
    PARENT_TAG,
    POSITION_TAG,
    PREDICTED_AT_TAG,
    PREDICTION_TAG,
    PREFIX_LEN_TAG,
    PROBABILITY_TAG,
    REUSED_FROM,
    SCHEDULED_FOR_TAG,
    SECONDS_SAVED,
    SHADOW_TAG,
    SHADOW_WORKFLOW_TAG,
    TARGETS_TAG,
    shadow_partition,
)

if TYPE_CHECKING:   # the stores import SQLAlchemy: loaded when used, not with the code location
    from shadow_dagster.store.outputs import ShadowOutputStore
    from shadow_dagster.store.signal_store import SignalStore


@dataclass
class Resolution:
    prediction_id: str
    shadow_run_id: str
    outcome: str
    reason: str
    cancelled: bool = False
    outputs_deleted: int = 0
    purged: bool = False          # the shadow run was deleted (retention over) in the same call
    seconds_saved: float = 0.0
    seconds_wasted: float = 0.0


def _produced(run, targets: list[str]) -> list[str]:
    """Assets the shadow run was launched for besides its activity's own `targets`."""
    from shadow_dagster.dagster.shadow_runner import selection_of

    return sorted(set(selection_of(run)) - set(targets))


def _reuse_of(instance: DagsterInstance, run, targets: list[str]) -> tuple[set[str], float]:
    """(the assets among `targets` a live run reused from this shadow run, seconds saved by them)."""
    saved, reused = 0.0, set()
    partition = shadow_partition(run.tags)
    for key in targets:
        flt = AssetRecordsFilter(asset_key=AssetKey.from_user_string(key),
                                 asset_partitions=[partition] if partition else None)
        for rec in instance.fetch_materializations(flt, limit=5).records:
            meta = rec.asset_materialization.metadata if rec.asset_materialization else {}
            src = meta.get(REUSED_FROM)
            if src is not None and getattr(src, "run_id", getattr(src, "value", None)) == run.run_id:
                reused.add(key)
                value = meta.get(SECONDS_SAVED)
                saved += float(getattr(value, "value", value) or 0.0)
                break
    return reused, saved


def _created_s(output) -> float:
    """When a shadow output was stored, epoch seconds (SQLite hands back naive UTC datetimes)."""
    created = output.created_at
    return (created if created.tzinfo else created.replace(tzinfo=timezone.utc)).timestamp()


def _late(run, view: GroupView, activity: str, targets: list[str], outputs: ShadowOutputStore | None,
          now: float, grace_s: float) -> str | None:
    """Why the shadow run came too late for a live step now in progress, or None if it may still be reused.

    The live step checks for a shadow output once, when it starts. An output of this shadow run
    written more than `grace_s` after that start (or none at all, `grace_s` after it) can no longer
    be taken, so the shadow run is a miss while the live step is still computing.
    """
    starts = [s for s, a, st, _ in view.steps if a == activity and st == "IN_PROGRESS"]
    if outputs is None or not starts or now - starts[-1] < grace_s:
        return None
    start = starts[-1]
    partition = shadow_partition(run.tags)
    for key in targets:
        out = outputs.find_for_run(run.run_id, key, partition)
        if out is None:
            continue
        if _created_s(out) <= start + grace_s:
            return None   # ready in time: the live step may be promoting it; settle on its result
    return f"live run started {activity} before the shadow output was ready"


def _output_timing(run, view: GroupView, activity: str, targets: list[str],
                   outputs: ShadowOutputStore | None) -> tuple[str, float | None]:
    """When the shadow output was ready relative to the live step's start: (text for a miss's
    reason, seconds it was ready before the start, < 0 after; None without an output)."""
    starts = [s for s, a, _, _ in view.steps if a == activity]
    if outputs is None or not starts:
        return "", None
    made = []
    for key in targets:
        out = outputs.find_for_run(run.run_id, key, shadow_partition(run.tags))
        if out is not None:
            made.append(_created_s(out))
    if not made:
        return "; the shadow run wrote no output", None
    lead = starts[-1] - max(made)
    return (f"; the shadow output was ready {lead:.1f}s before the live step started" if lead >= 0
            else f"; the shadow output was ready {-lead:.1f}s after the live step started"), round(lead, 3)


class Verdict(NamedTuple):
    """How a prediction settled: outcome, reason, seconds saved, and for a miss the live step
    computed itself, when the shadow output was ready (see `OutcomeRecord.output_lead_s`)."""

    outcome: str
    reason: str
    saved: float = 0.0
    output_lead_s: float | None = None


def _verdict(instance, run, view: GroupView, now: float, ttl_s: float, chain_gap_s: float,
             divergence_slack: int, outputs: ShadowOutputStore | None = None,
             late_grace_s: float = 1.0) -> Verdict | None:
    """The Verdict once the prediction is settled, else None."""
    tags = run.tags
    activity = tags.get(ACTIVITY_TAG, "")
    targets = json.loads(tags.get(TARGETS_TAG, "[]"))
    reused, saved = _reuse_of(instance, run, targets + _produced(run, targets))
    if targets and set(targets) <= reused:
        return Verdict("hit", "live run reused the shadow output", saved)
    used = sorted(reused - set(targets))
    if used:   # the run also made a downstream step's output, and the live run took that one
        return Verdict("hit", f"live run reused {', '.join(used)} from this shadow run (not all of {activity})",
                       saved)
    if run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
        return Verdict("miss", f"shadow run {run.status.value.lower()}")
    status = view.step_status(activity)
    if status in ("SUCCESS", "FAILURE", "SKIPPED"):
        timing, lead = _output_timing(run, view, activity, targets, outputs)
        return Verdict("miss", f"live run executed {activity} itself ({status.lower()}) without reuse" + timing,
                       output_lead_s=lead)
    if status == "IN_PROGRESS":
        late = _late(run, view, activity, targets, outputs, now, late_grace_s)
        if late:
            return Verdict("miss", late)
    tick = _scheduled_run_pending(tags, view) if status is None else 0.0
    if tick:                      # planned for a run a schedule launches: wait for it to start
        if now - tick > chain_gap_s:
            return Verdict("miss", f"the schedule launched no run within {chain_gap_s:.0f}s of its tick")
    elif status is None:
        why = abandoned(view.prefix, start=int(tags.get(PREFIX_LEN_TAG, "0")),
                        position=int(tags.get(POSITION_TAG, "0")), activity=activity, failed=view.failed, ended_at=view.ended_at, now=now,
                        chain_gap_s=chain_gap_s, divergence_slack=divergence_slack)
        if why:
            return Verdict("miss", why)
    why = expired(float(tags.get(PREDICTED_AT_TAG, "0") or 0), now, ttl_s) if status != "IN_PROGRESS" else None
    return Verdict("miss", why) if why else None


def _scheduled_run_pending(tags, view: GroupView) -> float:
    """The tick (epoch s) of the scheduled run a shadow run was planned for while no run of the
    instance carries that tick yet; 0.0 otherwise."""
    from shadow_dagster.signals.instances import SCHEDULED_AT_TAG, tick_iso

    try:
        tick = float(tags.get(SCHEDULED_FOR_TAG, ""))
    except ValueError:
        return 0.0
    iso = tick_iso(tick)
    return 0.0 if any(r.dagster_run.tags.get(SCHEDULED_AT_TAG) == iso for r in view.records) else tick


def recent_shadow_runs(instance: DagsterInstance, created_after: float) -> list:
    """Shadow runs created after `created_after` (epoch s): older ones were settled by their TTL."""
    from datetime import datetime, timezone

    return list(instance.get_runs(filters=RunsFilter(
        tags={SHADOW_TAG: "true"}, created_after=datetime.fromtimestamp(created_after, tz=timezone.utc))))


def cancel_shadow_run(instance: DagsterInstance, run) -> bool:
    """Cancel a queued or started shadow run; True when the request was accepted."""
    if not run.tags.get(SHADOW_TAG) == "true":
        raise ValueError(f"refusing to cancel run {run.run_id}: it is not a shadow run")
    if run.is_finished:
        return False
    try:
        ok = instance.run_coordinator.cancel_run(run.run_id)
    except Exception:  # noqa: BLE001 - a run the coordinator does not know still gets marked below
        ok = False
    if not ok and run.status in (DagsterRunStatus.NOT_STARTED, DagsterRunStatus.QUEUED):
        instance.report_run_canceled(run, message="shadow-dagster rollback: prediction missed")
        ok = True
    return ok


def _wasted(instance, run, now: float) -> float:
    rec = instance.get_run_record_by_id(run.run_id)
    if rec is None or rec.start_time is None:
        return 0.0
    return max(0.0, (rec.end_time or now) - rec.start_time)


def resolve_shadow_runs(
    instance: DagsterInstance,
    signal_store: SignalStore,
    output_store: ShadowOutputStore | None,
    *,
    ttl_s: float = 3600.0,
    chain_gap_s: float = 300.0,
    divergence_slack: int = 2,
    now: float | None = None,
    views: LiveViews | None = None,
    purge: str = "all",
    retention_s: float = 86400.0,
    log=None,
    family_of=None,
) -> list[Resolution]:
    """Settle every launched, unresolved prediction; cancel and clean up the misses; delete settled
    shadow runs that finished more than `retention_s` ago (`purge`: "all", "misses" or "off")."""
    if purge not in PURGE_MODES:
        raise ValueError(f"purge must be one of {PURGE_MODES}, got {purge!r}")
    now = time.time() if now is None else now
    shadow_runs = recent_shadow_runs(instance, now - 2 * ttl_s)
    by_pred: dict[str, list] = {}
    for run in shadow_runs:
        pid = run.tags.get(PREDICTION_TAG)
        if pid:
            by_pred.setdefault(pid, []).append(run)
    known = read_outcomes(signal_store, prediction_ids=by_pred) if by_pred else []
    resolved = {r.prediction_id for r in known if r.stage in RESOLVED}
    views = LiveViews(instance, family_of) if views is None else views
    out: list[Resolution] = []
    records: list[OutcomeRecord] = []
    for pid, runs in by_pred.items():
        if pid in resolved:
            continue
        for run in runs:
            key = run.tags.get(PARENT_TAG, "")
            verdict = _verdict(instance, run, views.get(key), now, ttl_s, chain_gap_s, divergence_slack,
                               output_store)
            if verdict is None:
                continue
            outcome, reason = verdict.outcome, verdict.reason
            res = Resolution(pid, run.run_id, outcome, reason)
            if outcome == "hit":
                res.seconds_saved = verdict.saved
            else:
                res.cancelled = cancel_shadow_run(instance, run)
                res.seconds_wasted = _wasted(instance, run, now)
                if output_store is not None:
                    from shadow_dagster.store.outputs import delete_shadow_outputs

                    res.outputs_deleted = delete_shadow_outputs(output_store, prediction_id=pid)
                    res.outputs_deleted += delete_shadow_outputs(output_store, run_id=run.run_id)
            out.append(res)
            records.append(OutcomeRecord(
                pid, outcome, int(now * 1000), workflow=run.tags.get(SHADOW_WORKFLOW_TAG), workflow_key=key,
                activity=run.tags.get(ACTIVITY_TAG), probability=float(run.tags.get(PROBABILITY_TAG, 0) or 0),
                shadow_run_id=run.run_id, seconds_saved=res.seconds_saved, seconds_wasted=res.seconds_wasted,
                reason=reason, output_lead_s=verdict.output_lead_s))
            break
    if purge != "off":
        expired = expired_shadow_runs(instance, now - retention_s)
        # no tick settles a run last updated before the settling window opened (with the default
        # retention of a day, every expired run)
        stale = expired if retention_s >= 2 * ttl_s else expired_shadow_runs(instance, now - 2 * ttl_s)
        records += _never_settled(signal_store, stale, now)
    record_outcomes(signal_store, records)   # settled first: a purge never loses an outcome
    if purge != "off":
        done = purge_settled_shadow_runs(instance, signal_store, expired, mode=purge, now=now, log=log)
        for res in out:
            res.purged = res.shadow_run_id in done
    return out


def _never_settled(signal_store: SignalStore, runs: list, now: float) -> list:
    """A miss for each of `runs` (finished shadow runs last updated before the settling window,
    `2 x ttl_s`, opened: no tick can settle them any more) without an outcome, so that they are
    deleted like the others."""
    pids = {r.tags.get(PREDICTION_TAG) for r in runs} - {None, ""}
    resolved = {r.prediction_id for r in read_outcomes(signal_store, prediction_ids=pids) if r.stage in RESOLVED} \
        if pids else set()
    out = []
    for run in runs:
        pid = run.tags.get(PREDICTION_TAG)
        if not pid or pid in resolved:
            continue
        resolved.add(pid)
        out.append(OutcomeRecord(
            pid, "miss", int(now * 1000), workflow=run.tags.get(SHADOW_WORKFLOW_TAG),
            workflow_key=run.tags.get(PARENT_TAG), activity=run.tags.get(ACTIVITY_TAG),
            probability=float(run.tags.get(PROBABILITY_TAG, 0) or 0), shadow_run_id=run.run_id,
            reason="never settled (no tick saw it within 2 x ttl_s); deleted after the retention period"))
    return out


def expired_shadow_runs(instance: DagsterInstance, ended_before: float, limit: int = 100, pages: int = 5) -> list:
    """Finished shadow runs last updated before `ended_before` (epoch s), oldest first: up to
    `pages` pages of `limit`, so that runs kept for good (`purge="misses"` keeps hits) never hide
    older ones behind a single page."""
    from datetime import datetime, timezone

    finished = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
    flt = RunsFilter(tags={SHADOW_TAG: "true"}, statuses=finished,
                     updated_before=datetime.fromtimestamp(ended_before, tz=timezone.utc))
    out, cursor = [], None
    for _ in range(pages):
        page = list(instance.get_runs(filters=flt, cursor=cursor, limit=limit, ascending=True))
        out += page
        if len(page) < limit:
            break
        cursor = page[-1].run_id
    return out


def purge_settled_shadow_runs(instance: DagsterInstance, signal_store: SignalStore, shadow_runs: Iterable,
                              settled: dict[str, OutcomeRecord] | None = None, *, mode: str = "all",
                              now: float | None = None, log=None) -> set[str]:
    """Delete the finished shadow runs among `shadow_runs` whose prediction is settled (`settled`:
    prediction id -> hit/miss record, read from the outcomes when None); `mode` "misses" keeps hit
    runs. Runs in flight wait for a later call. Writes one "purged" outcome row per run; returns the
    run ids deleted (or found already gone)."""
    from shadow_dagster.dagster.purge import purge_shadow_run

    if mode not in PURGE_MODES:
        raise ValueError(f"purge mode must be one of {PURGE_MODES}, got {mode!r}")
    shadow_runs = list(shadow_runs)
    if settled is None:
        pids = {r.tags.get(PREDICTION_TAG, "") for r in shadow_runs} - {""}
        settled = {r.prediction_id: r for r in read_outcomes(signal_store, prediction_ids=pids) if r.stage in RESOLVED}
    now = time.time() if now is None else now
    done, records = set(), []
    for run in shadow_runs:
        rec = settled.get(run.tags.get(PREDICTION_TAG, ""))
        if rec is None or mode == "off" or (mode == "misses" and rec.stage == "hit"):
            continue
        if not run.is_finished:
            continue   # cancellation is asynchronous: purged on a later tick, once finished
        rr = instance.get_run_record_by_id(run.run_id)
        ran_s = max(0.0, (rr.end_time or now) - rr.start_time) if rr is not None and rr.start_time else 0.0
        try:
            result = purge_shadow_run(instance, run)
        except Exception as exc:  # noqa: BLE001 - one bad run must not stop the tick; retried next tick
            if log is not None:
                log.warning(f"purging shadow run {run.run_id} failed: {exc}")
            continue
        if not result.purged:
            continue
        done.add(run.run_id)
        records.append(OutcomeRecord(
            rec.prediction_id, "purged", int(now * 1000), workflow=run.tags.get(SHADOW_WORKFLOW_TAG),
            workflow_key=run.tags.get(PARENT_TAG), activity=run.tags.get(ACTIVITY_TAG),
            probability=float(run.tags.get(PROBABILITY_TAG, 0) or 0), shadow_run_id=run.run_id,
            seconds=round(ran_s, 3),   # the run's wall seconds: what it cost, kept after the run is gone
            reason=f"{rec.stage}: shadow run deleted after the retention period"))
    record_outcomes(signal_store, records)
    return done
