"""One evaluation of the speculative sensor, as a small object (see `speculative_sensor`).

`SpeculativeTick.evaluate()` settles past predictions, then plans every live instance and every
run a schedule is about to request, and returns the `SensorResult` (run requests, the report
materialization) or a `SkipReason` whose first words are a `Skip` value.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from dagster import AssetKey, AssetMaterialization, SensorEvaluationContext, SensorResult, SkipReason

from shadow_dagster.dagster.fingerprints import fingerprint_path
from shadow_dagster.dagster.host import host_load_per_core, launch_samples, runs_on_live_host
from shadow_dagster.dagster.instances import family_resolver, upcoming_key
from shadow_dagster.dagster.live_groups import IN_FLIGHT, GroupView, LiveViews, live_groups
from shadow_dagster.dagster.prepare import Budget, Preparer
from shadow_dagster.dagster.rollback import recent_shadow_runs, resolve_shadow_runs
from shadow_dagster.dagster.scheduled import upcoming_runs
from shadow_dagster.dagster.shadow_job import build_catalog
from shadow_dagster.dagster.shadow_runner import shadow_request
from shadow_dagster.signals.cases import case_attrs
from shadow_dagster.speculation.candidates import live_candidates, scheduled_candidates
from shadow_dagster.speculation.config import SpeculationConfig
from shadow_dagster.speculation.cursor import TickCursor
from shadow_dagster.speculation.decisions import changed, decisions_of
from shadow_dagster.speculation.planner import Candidate, StepInfo, plan, prediction_id
from shadow_dagster.speculation.policy import PolicyState, update_launch_estimate
from shadow_dagster.store.layout import ShadowStorage
from shadow_dagster.store.outcomes import RESOLVED, OutcomeRecord, policy_outcomes, read_outcomes, record_outcomes
from shadow_dagster.tags import (
    ACTIVITY_TAG,
    PARENT_TAG,
    PARTITION_TAG,
    POSITION_TAG,
    PREDICTED_AT_TAG,
    PREDICTION_TAG,
    PREFIX_LEN_TAG,
    PROBABILITY_TAG,
    SCHEDULED_FOR_TAG,
    SHADOW_WORKFLOW_TAG,
    TARGETS_TAG,
    WORKFLOW_TAG,
)

if TYPE_CHECKING:   # numpy and SQLAlchemy: loaded at the first tick, not with the code location
    from shadow_dagster.fingerprint import Fingerprint


class Skip(str, Enum):
    """Why a tick launched nothing (the first words of its SkipReason)."""

    TICK_BUDGET = "tick budget"          # the last tick took its share of the wall clock: none now
    HOST_SATURATED = "host saturated"    # the load guard: shadow work would take live runs' CPU
    NO_WORK = "no shadow work"           # settled and planned, nothing worth a shadow run


class FingerprintCache:
    """Fitted fingerprints by workflow, reloaded when their file changes."""

    def __init__(self, root):
        self.root, self.cache = root, {}

    def get(self, workflow: str) -> Fingerprint | None:
        path = fingerprint_path(workflow, self.root)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        hit = self.cache.get(workflow)
        if hit is None or hit[0] != mtime:
            from shadow_dagster.fingerprint import Fingerprint

            hit = self.cache[workflow] = (mtime, Fingerprint.load(path))
        return hit[1]

    def usable(self, workflow: str) -> Fingerprint | None:
        fp = self.get(workflow)
        return fp if fp is not None and fp.reason is None and fp.content_hash else None


@dataclass
class SensorState:
    """What a speculative sensor keeps between ticks in its process (the cursor holds the rest)."""

    config: SpeculationConfig
    storage: ShadowStorage
    job_name: str
    preparer: Preparer
    fingerprints: FingerprintCache
    catalogs: dict = field(default_factory=dict)   # id(repository) -> catalog
    written: dict = field(default_factory=dict)    # prediction id -> the Decision this process last stored

    @classmethod
    def build(cls, config: SpeculationConfig, storage: ShadowStorage, job_name: str) -> SensorState:
        return cls(config, storage, job_name, Preparer(config.prepare, job_name),
                   FingerprintCache(storage.fingerprint_dir))

    def stores(self):
        """(signal store, shadow output store or None without a Dagster home for the shadow files)."""
        from shadow_dagster.store.engine import StoreConfigError

        try:
            outputs = self.storage.output_store()
        except StoreConfigError:
            outputs = None
        return self.storage.signal_store(), outputs


def available_assets(instance, view: GroupView, catalog: dict[str, StepInfo], workflow_acts: set[str],
                     needed: set[str], partition: str | None, cache: dict) -> set[str]:
    """Assets the instance's finished steps produced, plus needed assets no step of the workflow makes."""
    have = set()
    for _, act, status, _ in view.steps:
        if status == "SUCCESS" and act in catalog:
            have |= set(catalog[act].assets)
    made_here = {a for act in workflow_acts if act in catalog for a in catalog[act].assets}
    for key in needed - have - made_here:
        if (key, partition) not in cache:
            ak = AssetKey.from_user_string(key)
            cache[(key, partition)] = instance.get_latest_materialization_event(ak) is not None
        if cache[(key, partition)]:
            have.add(key)
    return have


def report_events(cursor: TickCursor, now: float, interval_s: float | None, repo, instance, signals, policy,
                  window_days: float, log) -> list:
    """The `speculation_report` materialization to log this tick, if the repository defines the
    report, something changed and the last one is `interval_s` old; a report that fails to build
    is logged as a warning and retried later, never at the cost of the tick's launches."""
    from shadow_dagster.dagster.speculation_report import REPORT_KEY, report_metadata

    if not cursor.report_due(now, interval_s) or not repo.asset_graph.has(REPORT_KEY):
        return []
    try:
        meta = report_metadata(instance, signals, policy, window_days, now)
    except Exception as exc:  # noqa: BLE001 - the report is a view; launches and outcomes come first
        log.warning(f"speculation_report not logged this tick: {type(exc).__name__}: {exc}")
        return []
    cursor.report_at, cursor.report_dirty = now, False
    return [AssetMaterialization(REPORT_KEY, metadata=meta, description="logged by the speculative sensor")]


class SpeculativeTick:
    """One tick: settle, plan each live and scheduled instance, launch, record."""

    def __init__(self, state: SensorState, context: SensorEvaluationContext):
        self.state, self.config, self.context = state, state.config, context
        self.instance, self.log = context.instance, context.log
        self.now = time.time()
        self.cursor = TickCursor.parse(context.cursor)
        self.requests: list = []
        self.records: list[OutcomeRecord] = []
        self.notes: list[str] = []
        self.decided: list = []
        self.prepared: list[OutcomeRecord] = []
        self.exists_cache: dict = {}

    # ------------------------------------------------------------------ the tick
    def evaluate(self):
        cfg, now, cursor = self.config, self.now, self.cursor
        wait = cursor.budget_wait(now, cfg.max_tick_share)
        if wait > 0:   # the cursor stays as it is
            return SkipReason(f"{Skip.TICK_BUDGET.value}: the last tick took {cursor.tick[1]:.2f}s; next tick in "
                              f"{wait:.1f}s (max_tick_share {cfg.max_tick_share})")
        self.signals, self.outputs = self.state.stores()
        cursor.forget_before(now - cfg.ttl_s)
        repo = self.repo = self.context.repository_def
        if repo is None:
            raise ValueError("the speculative sensor needs its repository (build_sensor_context(repository_def=...))")
        self.family_of = family_resolver(repo)
        self.views = LiveViews(self.instance, self.family_of)
        resolved = resolve_shadow_runs(self.instance, self.signals, self.outputs, ttl_s=cfg.ttl_s,
                                       chain_gap_s=cfg.chain_gap_s, divergence_slack=cfg.divergence_slack, now=now,
                                       views=self.views, purge=cfg.purge, retention_s=cfg.retention_s, log=self.log,
                                       family_of=self.family_of)
        catalog = self.state.catalogs.get(id(repo))
        if catalog is None:
            catalog = self.state.catalogs[id(repo)] = build_catalog(repo, self.state.job_name)
        self.catalog = catalog
        recent = read_outcomes(self.signals, since_ms=int((now - 30 * 86400) * 1000))
        self.policy = PolicyState.from_outcomes(
            policy_outcomes(recent), cfg.policy.resolve_launch_cap(runs_on_live_host(self.instance)))
        self._settle_preparations(recent)

        load = host_load_per_core() if cfg.policy.max_load_per_core is not None else None
        if cfg.policy.host_saturated(load):   # shadow work would take CPU from live runs: none this tick
            cursor.report_dirty = cursor.report_dirty or bool(resolved)
            self._save_cursor()
            return SkipReason(f"{Skip.HOST_SATURATED.value}: load {load:.2f} per core > max_load_per_core "
                              f"{cfg.policy.max_load_per_core}; resolved {len(resolved)} predictions")

        self._count_shadow_work(recent)
        groups = live_groups(self.instance, now, cfg.chain_gap_s, self.family_of)
        self._plan_live(groups)
        if cfg.schedule_horizon_s is not None:
            self._plan_scheduled(groups)
        return self._finish(resolved)

    # ------------------------------------------------------------------ steps
    def _settle_preparations(self, recent: list[OutcomeRecord]) -> None:
        preparer = self.state.preparer
        self.settled, self.open_prep, self.budget = [], {}, Budget.start(preparer.config)
        if preparer.active:
            self.prep = preparer.repo(self.repo, self.instance)
            self.settled, self.open_prep = preparer.settle(
                self.prep, instance=self.instance, signals=self.signals, log=self.log, outcomes=recent,
                views=self.views, now=self.now, ttl_s=self.config.ttl_s, chain_gap_s=self.config.chain_gap_s,
                divergence_slack=self.config.divergence_slack)

    def _count_shadow_work(self, recent: list[OutcomeRecord]) -> None:
        """What is already launched or in flight, and what a launch really costs here."""
        now, cursor = self.now, self.cursor
        shadow_runs = recent_shadow_runs(self.instance, now - 2 * self.config.ttl_s)
        existing = {r.tags.get(PREDICTION_TAG) for r in shadow_runs}
        self.existing = existing | {r.prediction_id for r in recent if r.stage in RESOLVED}   # settled may be purged
        cursor.launch_s = update_launch_estimate(cursor.launch_s, launch_samples(self.instance, shadow_runs, now))
        self.overhead = max(self.config.launch_overhead_s, cursor.launch_s or 0.0)
        self.in_flight: dict[str, int] = {}
        for r in shadow_runs:
            if r.status in IN_FLIGHT:
                parent = r.tags.get(PARENT_TAG, "")
                self.in_flight[parent] = self.in_flight.get(parent, 0) + 1
        pending = {pid for pid, ts in cursor.launched.items()
                   if pid not in self.existing and now - ts <= self.config.pending_grace_s}
        self.total = sum(self.in_flight.values()) + len(pending)

    def _plan_live(self, groups: dict[str, list]) -> None:
        horizon, min_p = self.config.horizon, self.config.policy.min_probability
        for key, seed in sorted(groups.items()):
            view = self.views.get(key, seed)
            if not view.records:
                continue
            fp = self.state.fingerprints.usable(view.workflow)
            if fp is None:
                self.notes.append(f"{key}: no usable fingerprint for {view.workflow}")
                continue
            first = view.records[0].dagster_run
            attrs = case_attrs(first.tags, view.steps[0][0] if view.steps else self.now)
            cands = live_candidates(fp, view, attrs, self.now, horizon, min_p)
            self._plan_instance(key, view, fp, cands, first.tags.get(PARTITION_TAG),
                                {r.dagster_run.job_name for r in view.records if not r.dagster_run.is_finished})

    def _plan_scheduled(self, groups: dict[str, list]) -> None:
        """Runs a running schedule requests within `schedule_horizon_s`, planned like instances not started."""
        cfg, now = self.config, self.now
        jobs = {a.split("/", 1)[0] for a, i in self.catalog.items() if not i.critical}
        busy = {r.dagster_run.job_name for recs in groups.values() for r in recs if not r.dagster_run.is_finished}
        for up in upcoming_runs(self.instance, self.repo, now, cfg.schedule_horizon_s, jobs, self.notes):
            key = upcoming_key(self.instance, up.job_name, up.partition, up.run_tags, up.tick_s, self.family_of)
            if key in groups:
                continue                  # a live instance: planned already
            view = self.views.get(key)
            view.planned = view.planned or up.job_name
            fp = self.state.fingerprints.usable(view.workflow)
            if fp is None:
                self.notes.append(f"{key}: no usable fingerprint for {view.workflow}")
                continue
            first = view.records[0].dagster_run.tags if view.records else up.run_tags
            attrs = case_attrs(first, view.steps[0][0] if view.steps else up.tick_s)
            cands = [c for c in scheduled_candidates(fp, view.prefix, attrs, up.tick_s - now, cfg.horizon,
                                                     cfg.policy.min_probability)
                     if c.activity.split("/", 1)[0] == up.job_name]
            self._plan_instance(key, view, fp, cands, up.partition, busy, {SCHEDULED_FOR_TAG: f"{up.tick_s:.0f}"})

    def _plan_instance(self, key: str, view: GroupView, fp: Fingerprint, cands: list[Candidate],
                       partition: str | None, live_jobs: set[str], extra_tags: dict | None = None) -> None:
        now, cursor, workflow, catalog = self.now, self.cursor, view.workflow, self.catalog
        durations = {a: d.mean for a, d in fp.timing.duration.items()}
        local = {a: StepInfo(i.assets, i.critical, i.deps, durations.get(a), i.partitioned, i.refusal)
                 for a, i in catalog.items()}
        needed = {d for c in cands if c.activity in local for d in local[c.activity].deps}
        available = available_assets(self.instance, view, local, set(fp.vocab.activities), needed, partition,
                                     self.exists_cache)
        result = plan(workflow=workflow, workflow_key=key, fingerprint_hash=fp.content_hash,
                      candidates=cands, catalog=local, available=available, done=set(view.prefix),
                      policy=self.policy, prefix_length=len(view.prefix),
                      in_flight_total=self.total, in_flight_workflow=self.in_flight.get(key, 0),
                      already_launched=self.existing | set(cursor.launched),
                      partition_key=partition, launch_overhead_s=self.overhead,
                      launches_this_tick=len(self.requests), live_jobs=live_jobs)
        preparer = self.state.preparer
        if preparer.active and view.records:
            recs, prep_notes = preparer.prepare(
                self.prep, self.budget, instance=self.instance, log=self.log, workflow_key=key, view=view,
                fingerprint_hash=fp.content_hash, candidates=cands, catalog=local, available=available,
                partition=partition, open_ids=self.open_prep, now=now)
            self.prepared.extend(recs)
            self.notes.extend(prep_notes)
        self.decided.extend(changed(decisions_of(result, cands, workflow=workflow, workflow_key=key,
                                                 fingerprint_hash=fp.content_hash, now_ms=int(now * 1000)),
                                    self.state.written))
        self.notes.extend(f"{key}: {act}: {why}" for act, why in result.skipped.items()
                          if not why.startswith(("critical", "already")))
        if not cands and view.in_progress:
            self.notes.append(f"{key}: no prediction after {view.prefix[-3:]}")
        for act, why in result.skipped.items():
            if why.startswith(("policy", "cap")):
                pid = prediction_id(key, act, fp.content_hash)
                if pid not in cursor.predicted:
                    cursor.predicted[pid] = now
                    prob = next((c.probability for c in cands if c.activity == act), None)
                    self.records.append(OutcomeRecord(pid, "predicted", int(now * 1000), workflow=workflow,
                                                      workflow_key=key, activity=act, probability=prob, reason=why))
        for work in result.work:
            self._launch(key, view, work, extra_tags)

    def _launch(self, key: str, view: GroupView, work, extra_tags: dict | None) -> None:
        now, workflow = self.now, view.workflow
        tags = {
            PARENT_TAG: key, PROBABILITY_TAG: f"{work.probability:.6f}", ACTIVITY_TAG: work.activity,
            TARGETS_TAG: json.dumps(list(self.catalog[work.activity].assets)), POSITION_TAG: str(work.position),
            PREFIX_LEN_TAG: str(len(view.prefix)), PREDICTED_AT_TAG: f"{now:.3f}", SHADOW_WORKFLOW_TAG: workflow,
            # its own workflow key: a shadow run never joins the live instance's case
            WORKFLOW_TAG: "shadow:" + work.prediction_id, **(extra_tags or {}),
        }
        self.requests.append(shadow_request(work.assets, work.partition_key, prediction_id=work.prediction_id,
                                            tags=tags, run_key=work.run_key, asset_job=self.state.job_name))
        self.cursor.launched[work.prediction_id] = now
        self.cursor.predicted[work.prediction_id] = now
        self.total += 1
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        for stage in ("predicted", "launched"):
            self.records.append(OutcomeRecord(work.prediction_id, stage, int(now * 1000), workflow=workflow,
                                              workflow_key=key, activity=work.activity,
                                              probability=work.probability))

    def _finish(self, resolved: list) -> SensorResult:
        cfg, now, cursor, written = self.config, self.now, self.cursor, self.state.written
        stored = record_outcomes(self.signals, self.records + self.prepared)
        self.signals.write_decisions(self.decided)
        news = any(d.differs_from(written.get(d.prediction_id)) for d in self.decided)   # not ETA refreshes
        written.update((d.prediction_id, d) for d in self.decided)
        for pid in [p for p, d in written.items() if now * 1000 - d.ts_ms > cfg.ttl_s * 1000]:
            del written[pid]
        cursor.report_dirty = cursor.report_dirty or bool(news or stored or resolved)
        events = report_events(cursor, now, cfg.report_interval_s, self.repo, self.instance, self.signals,
                               cfg.policy, cfg.report_window_days, self.log)
        self._save_cursor()
        skip = None
        if not self.requests:
            summary = f"{Skip.NO_WORK.value}; resolved {len(resolved)} predictions"
            if self.state.preparer.active:
                summary += (f"; prefetched {sum(r.nbytes for r in self.prepared if r.stage == 'prefetch')} bytes, "
                            f"{sum(r.stage == 'warmup' for r in self.prepared)} warm-up(s), "
                            f"{len(self.settled)} settled")
                self.notes.extend(self.prep.notes)
            skip = SkipReason("; ".join([summary] + self.notes[:5]))
        return SensorResult(run_requests=self.requests, skip_reason=skip, asset_events=events)

    def _save_cursor(self) -> None:
        self.cursor.tick = (self.now, time.time() - self.now)
        self.context.update_cursor(self.cursor.dumps())


__all__ = ["FingerprintCache", "SensorState", "Skip", "SpeculativeTick", "available_assets", "report_events"]
