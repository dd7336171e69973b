"""The speculative sensor: predict live workflow instances' next steps and launch shadow runs.

Each tick:
1. settles launched predictions (`rollback.resolve_shadow_runs`: hits, misses, cancel + delete);
2. finds live instances: runs queued or in progress (not shadow runs), and instances whose last run
   succeeded less than `chain_gap_s` ago (the next job of a chain may follow), grouped by workflow
   key exactly as the signal cases are;
3. builds each prefix ("job/step" in start order from `get_run_step_stats`), loads the workflow's
   fingerprint, rolls the prediction forward `horizon` steps, plans non-critical asset steps whose
   inputs exist, applies the policy (calibrated by recorded outcomes) and the caps;
4. yields one `RunRequest` per work item on the shadow runner job (`shadow_runner`: the work's
   assets execute on the shadow run's own instance, never in the live catalog), with a
   deterministic run key and the shadow tags; launched prediction ids are kept in the cursor, and
   existing shadow runs are checked by prediction tag, so a repeated tick launches nothing twice.

Only asset steps are eligible; op steps are reported as skipped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSelection,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from shadow_dagster.dagster.fingerprints import fingerprint_path
from shadow_dagster.dagster.job_graph import definition_graph
from shadow_dagster.dagster.prepare import Budget, Preparer
from shadow_dagster.dagster.shadow_runner import (
    RUNNER_JOB_NAME,
    SHADOW_JOB_NAME,
    shadow_request,
    shadow_runner_job,
)
from shadow_dagster.dagster.live_groups import IN_FLIGHT, GroupView, group_view
from shadow_dagster.dagster.rollback import recent_shadow_runs, resolve_shadow_runs
from shadow_dagster.store.outcomes import RESOLVED, OutcomeRecord, policy_outcomes, read_outcomes, record_outcomes
from shadow_dagster.tags import (
    ACTIVITY_TAG,
    POSITION_TAG,
    PREDICTED_AT_TAG,
    PREFIX_LEN_TAG,
    SCHEDULED_FOR_TAG,
    SHADOW_WORKFLOW_TAG,
    TARGETS_TAG,
)
from shadow_dagster.dagster.instances import family_resolver, instance_keys, no_family, upcoming_key
from shadow_dagster.dagster.scheduled import upcoming_runs
from shadow_dagster.signals.cases import case_attrs
from shadow_dagster.speculation.decisions import changed, decisions_of
from shadow_dagster.speculation.planner import Candidate, StepInfo, expand, plan, prediction_id
from shadow_dagster.speculation.config import SpeculationConfig
from shadow_dagster.speculation.policy import PolicyState, update_launch_estimate
from shadow_dagster.store.layout import ShadowStorage
from shadow_dagster.tags import (
    PARENT_TAG,
    PARTITION_TAG,
    PREDICTION_TAG,
    PROBABILITY_TAG,
    SHADOW_TAG,
    WORKFLOW_TAG,
    is_own_run,
)

if TYPE_CHECKING:   # numpy and SQLAlchemy: loaded at the first tick, not with the code location
    from shadow_dagster.fingerprint import Fingerprint

SPECULATIVE_SENSOR_NAME = "shadow_speculative_sensor"
REPORT_JOB = "shadow_dagster_report"


# ------------------------------------------------------------------------------ shadow job
def _non_critical_keys(assets: Iterable) -> list[AssetKey]:
    from shadow_dagster.dagster.critical import asset_is_critical

    return [key for a in assets if isinstance(a, AssetsDefinition)
            for key in a.keys if not asset_is_critical(a, key)]


def shadow_job(assets: Iterable, name: str = SHADOW_JOB_NAME, executor_def=None,
               read_only_resources: Iterable[str] = ()):
    """The asset job shadow runs execute: every non-critical asset among `assets` (subset per run).

    Shadow runs hold a few predicted steps and race the live run to them, so by default their
    steps run in the run worker's process (no per-step process start); pass `executor_def` to
    choose another executor. `read_only_resources` (resource keys the user declares write nothing)
    ride on the job's tags to the critical guard of every shadow run.
    """
    from dagster import in_process_executor

    from shadow_dagster.dagster.shadow_env import READ_ONLY_TAG

    keys = _non_critical_keys(list(assets))
    if not keys:
        raise ValueError("no non-critical assets to pre-execute: tag safe assets with "
                         "shadow_dagster/critical='false' (op_tags or tags)")
    return define_asset_job(name, selection=AssetSelection.assets(*keys),
                            executor_def=executor_def or in_process_executor,
                            tags={READ_ONLY_TAG: ",".join(sorted(read_only_resources))},
                            description="shadow-dagster: pre-executes predicted non-critical assets")


# ------------------------------------------------------------------------------ catalog
def build_catalog(repository_def, shadow_job_name: str = SHADOW_JOB_NAME) -> dict[str, StepInfo]:
    """activity ("job/step") -> StepInfo for every asset step of every job of the repository.

    A step is eligible (critical=False) only if it is non-critical and all its assets are in the
    shadow job, so that the shadow runner can execute them; one that needs a resource that is not
    shadow-safe, or reads an input through an IO manager that may have side effects, carries the
    refusal in words.
    """
    from shadow_dagster.dagster.shadow_env import read_only_from_tags, refusal, unsafe_in_runner

    try:
        shadow = repository_def.get_job(shadow_job_name)
        shadow_keys = {k.to_user_string() for k in shadow.asset_layer.selected_asset_keys}
        read_only = read_only_from_tags(shadow.tags)
    except Exception:  # noqa: BLE001 - no shadow job: nothing is eligible
        shadow_keys, read_only = set(), []
    graph = repository_def.asset_graph
    catalog: dict[str, StepInfo] = {}
    for job in repository_def.get_all_jobs():
        if job.name == shadow_job_name or job.name.startswith("__"):
            continue   # the shadow job and Dagster's implicit asset job are not workflows
        _, nodes = definition_graph(job)
        for step_key, info in nodes.items():
            assets = tuple(info.get("asset_keys") or ())
            if not assets:
                continue
            deps, partitioned = set(), False
            for key in assets:
                node = graph.get(AssetKey.from_user_string(key))
                deps |= {p.to_user_string() for p in node.parent_keys}
                partitioned = partitioned or node.partitions_def is not None
            critical = bool(info.get("critical", True)) or not set(assets) <= shadow_keys
            # shadow runs are runs of the runner, where outputs never reach the user's IO manager
            unsafe = [] if critical else unsafe_in_runner(info.get("required_resources", ()),
                                                          info.get("input_io_managers", ()), job.resource_defs,
                                                          read_only)
            catalog[f"{job.name}/{step_key}"] = StepInfo(assets, critical, tuple(sorted(deps - set(assets))),
                                                         None, partitioned, refusal(unsafe) if unsafe else None)
    return catalog


# ------------------------------------------------------------------------------ live instances
def live_groups(instance, now: float, chain_gap_s: float, family_of=no_family) -> dict[str, list]:
    """workflow key -> RunRecords that make the instance live (in flight, or a chain just finished)."""
    groups: dict[str, list] = {}
    recs = list(instance.get_run_records(filters=RunsFilter(statuses=list(IN_FLIGHT - {DagsterRunStatus.CANCELING}))))
    if chain_gap_s > 0:
        after = datetime.fromtimestamp(now - chain_gap_s, tz=timezone.utc)
        recs += [r for r in instance.get_run_records(filters=RunsFilter(
            statuses=[DagsterRunStatus.SUCCESS], updated_after=after))
            if WORKFLOW_TAG in r.dagster_run.tags or PARTITION_TAG in r.dagster_run.tags]
    recs = [r for r in recs if not is_own_run(r.dagster_run.tags)]   # shadow, refit, report
    keys = instance_keys(instance, recs, family_of)
    for rec in recs:
        groups.setdefault(keys.get(rec.dagster_run.run_id, rec.dagster_run.run_id), []).append(rec)
    return groups


class _FingerprintCache:
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


def _cursor(raw: str | None) -> dict:
    empty = {"launched": {}, "predicted": {}, "tick": None, "launch_s": None, "report": [None, True]}
    if not raw:
        return empty
    try:
        doc = json.loads(raw)
        tick = doc.get("tick")
        tick = [float(tick[0]), float(tick[1])] if isinstance(tick, list) and len(tick) == 2 else None
        launch = doc.get("launch_s")
        report = doc.get("report")
        report = ([float(report[0]) if isinstance(report[0], (int, float)) else None, bool(report[1])]
                  if isinstance(report, list) and len(report) == 2 else [None, True])
        return {"launched": dict(doc.get("launched", {})), "predicted": dict(doc.get("predicted", {})),
                "tick": tick, "launch_s": float(launch) if isinstance(launch, (int, float)) else None,
                "report": report}
    except (ValueError, AttributeError, TypeError):
        return empty


def _launch_samples(instance, shadow_runs, now: float) -> list[float]:
    """Seconds from prediction to start of recent shadow runs (the launcher's real latency). A run
    not started yet counts with the time it has waited so far: its latency is at least that."""
    pending = (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING)
    if not shadow_runs:
        return []
    out = []
    for rec in instance.get_run_records(filters=RunsFilter(run_ids=[r.run_id for r in shadow_runs])):
        try:
            predicted = float(rec.dagster_run.tags.get(PREDICTED_AT_TAG, ""))
        except ValueError:
            continue
        if rec.start_time:
            out.append(rec.start_time - predicted)
        elif rec.dagster_run.status in pending:
            out.append(now - predicted)
    return out


def tick_budget_wait(cursor: dict, now: float, max_tick_share: float | None) -> float:
    """Seconds until the sensor may tick again so that its ticks take at most `max_tick_share` of
    the wall clock (0 when it may tick now): a tick that took d seconds waits d / share from its start."""
    if max_tick_share is None or not cursor.get("tick"):
        return 0.0
    started, took = cursor["tick"]
    return max(0.0, started + took / max_tick_share - now)


def _candidates(fp: Fingerprint, view: GroupView, attrs: dict, now: float, horizon: int,
                min_probability: float) -> list[Candidate]:
    prefix = view.prefix
    last_running = bool(view.executed) and view.executed[-1][2] in (None, "IN_PROGRESS")
    elapsed = max(0.0, now - view.executed[-1][0]) if view.executed else None

    def predict(path):
        live = list(path) == prefix
        pred = fp.predict(path, attrs, elapsed if live else None)
        if not pred.ok:
            return []
        out = []
        for s in pred.steps:
            # plan with how soon the live run may get there (10 % of past instances were sooner),
            # not the mean: a shadow output that lands after the live step started is wasted
            eta = _soonest_eta(s)
            if live and last_running and s.eta_seconds == 0.0:
                eta = None   # the running step overran every duration seen: its end is unknown
            out.append((s.activity, s.probability, eta))
        return out

    return expand(predict, prefix, horizon=horizon, min_probability=min_probability)


def _soonest_eta(step) -> float | None:
    """How soon the live run may reach a predicted step: its early ETA (10 % of past instances were
    sooner), else its ETA."""
    return step.eta_seconds if step.early_eta_seconds is None else step.early_eta_seconds


def _scheduled_candidates(fp: Fingerprint, prefix: list[str], attrs: dict, lead_s: float, horizon: int,
                          min_probability: float) -> list[Candidate]:
    """The next steps of an instance (`prefix` so far) whose next run a schedule launches in
    `lead_s` seconds: the steps right after the prefix start at the tick at the soonest (ETAs count
    from now); later ones add the fingerprint's soonest ETA."""
    def predict(path):
        pred = fp.predict(path, attrs, None)
        if not pred.ok:
            return []
        at_tick = list(path) == list(prefix)
        out = []
        for s in pred.steps:
            out.append((s.activity, s.probability, max(0.0, lead_s) if at_tick else _soonest_eta(s)))
        return out

    return expand(predict, prefix, horizon=horizon, min_probability=min_probability)


def _available(instance, view: GroupView, catalog: dict[str, StepInfo], workflow_acts: set[str],
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


def _report_events(cursor: dict, now: float, interval_s: float | None, repo, instance, signals, policy,
                   window_days: float, log) -> list:
    """The `speculation_report` materialization to log this tick, if the repository defines the
    report, something changed and the last one is `interval_s` old; a report that fails to build
    is logged as a warning and retried later, never at the cost of the tick's launches."""
    import math

    from shadow_dagster.dagster.speculation_report import REPORT_KEY, report_metadata

    last, dirty = cursor["report"]
    if last is not None and not (math.isfinite(last) and last <= now):
        last = None   # a corrupt or future time (clock skew) must not stop the report for good
    if interval_s is None or not dirty or (last is not None and now - last < interval_s) \
            or not repo.asset_graph.has(REPORT_KEY):
        return []
    try:
        meta = report_metadata(instance, signals, policy, window_days, now)
    except Exception as exc:  # noqa: BLE001 - the report is a view; launches and outcomes come first
        log.warning(f"speculation_report not logged this tick: {type(exc).__name__}: {exc}")
        return []
    cursor["report"] = [now, False]
    return [AssetMaterialization(REPORT_KEY, metadata=meta, description="logged by the speculative sensor")]


def host_load_per_core() -> float | None:
    """The 1-minute load average per usable CPU core of this host (None where there is none)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return load / max(1, cores)


# ------------------------------------------------------------------------------ the sensor
REMOTE_LAUNCHER_PACKAGES = ("dagster_k8s", "dagster_docker", "dagster_aws", "dagster_celery_k8s",
                            "dagster_celery_docker")


def runs_on_live_host(instance) -> bool:
    """Whether the instance's run launcher starts runs on this host, next to the live runs (the
    default launcher's subprocesses, in-process launchers, unknown launchers), rather than on other
    nodes (the Kubernetes, Docker and ECS launchers). Decides the policy's "auto" launch cap."""
    module = type(instance.run_launcher).__module__
    return not module.startswith(REMOTE_LAUNCHER_PACKAGES)


def build_speculative_sensor(
    *,
    config: SpeculationConfig | None = None,
    storage: ShadowStorage | None = None,
    name: str = SPECULATIVE_SENSOR_NAME,
    job=None,
    job_name: str = SHADOW_JOB_NAME,
):
    """The speculative sensor, set up by `config` (`SpeculationConfig`: policy, pre-fetch and
    pre-allocation, timing, purge, report, schedules) and reading and writing `storage`
    (`ShadowStorage`: signal store, output index, shadow files, fingerprints; defaults from the
    Dagster home, like `ShadowIOManager`'s). `job` (or `job_name`) is the shadow asset job; its
    shadow runs are runs of `shadow_runner_job`, which the sensor targets (and so registers).

    Pre-fetch and pre-allocation (`shadow_dagster.dagster.prepare`) serve every predicted step
    within the horizon, critical ones included. Shadow runs never reach the live asset catalog
    (`shadow_dagster.dagster.shadow_runner`), so they stay on their run pages until purged. Each
    tick stores, per live instance, the latest decision for every predicted step (probability, ETA,
    pre-executed or not and why).
    """
    config = SpeculationConfig() if config is None else config
    if not isinstance(config, SpeculationConfig):
        raise TypeError(f"config must be a SpeculationConfig, got {type(config).__name__}")
    storage = ShadowStorage() if storage is None else storage
    if not isinstance(storage, ShadowStorage):
        raise TypeError(f"storage must be a ShadowStorage, got {type(storage).__name__}")
    policy, ttl_s, chain_gap_s = config.policy, config.ttl_s, config.chain_gap_s
    max_tick_share = config.max_tick_share
    if job is not None:
        job_name = job.name
    preparer = Preparer(config.prepare, job_name)
    fingerprints = _FingerprintCache(storage.fingerprint_dir)
    catalogs: dict = {}
    written: dict = {}   # prediction id -> the Decision this process last stored

    def get_stores():
        """(signal store, shadow output store or None without a Dagster home for the shadow files)."""
        from shadow_dagster.store.engine import StoreConfigError

        try:
            outputs = storage.output_store()
        except StoreConfigError:
            outputs = None
        return storage.signal_store(), outputs

    @sensor(name=name, minimum_interval_seconds=config.minimum_interval_seconds,
            default_status=DefaultSensorStatus.RUNNING if config.running else DefaultSensorStatus.STOPPED,
            description="shadow-dagster: pre-executes predicted non-critical steps in shadow runs",
            jobs=[shadow_runner_job] + ([job] if job is not None else []))
    def _speculative_sensor(context: SensorEvaluationContext):
        now = time.time()
        instance = context.instance
        cursor = _cursor(context.cursor)
        wait = tick_budget_wait(cursor, now, max_tick_share)
        if wait > 0:   # the cursor stays as it is
            yield SkipReason(f"tick budget: the last tick took {cursor['tick'][1]:.2f}s; next tick in {wait:.1f}s "
                             f"(max_tick_share {max_tick_share})")
            return
        signals, outputs = get_stores()
        for section in ("launched", "predicted"):
            cursor[section] = {k: v for k, v in cursor[section].items() if now - v <= ttl_s}
        repo = context.repository_def
        if repo is None:
            raise ValueError("the speculative sensor needs its repository (build_sensor_context(repository_def=...))")
        family_of = family_resolver(repo)
        views: dict[str, GroupView] = {}
        resolved = resolve_shadow_runs(instance, signals, outputs, ttl_s=ttl_s, chain_gap_s=chain_gap_s,
                                       divergence_slack=config.divergence_slack, now=now, views=views,
                                       purge=config.purge, retention_s=config.retention_s, log=context.log, family_of=family_of)
        catalog = catalogs.get(id(repo))
        if catalog is None:
            catalog = catalogs[id(repo)] = build_catalog(repo, job_name)
        recent = read_outcomes(signals, since_ms=int((now - 30 * 86400) * 1000))
        state = PolicyState.from_outcomes(
            policy_outcomes(recent), policy.resolve_launch_cap(runs_on_live_host(instance)))
        prepared, open_prep, budget = [], {}, Budget.start(preparer.config)
        if preparer.active:
            prep = preparer.repo(repo, instance)
            settled, open_prep = preparer.settle(prep, instance=instance, signals=signals, log=context.log,
                                                 outcomes=recent, views=views, now=now, ttl_s=ttl_s,
                                                 chain_gap_s=chain_gap_s, divergence_slack=config.divergence_slack,
                                                 family_of=family_of)

        load = host_load_per_core() if policy.max_load_per_core is not None else None
        if policy.host_saturated(load):   # shadow work would take CPU from live runs: none this tick
            cursor["report"][1] = cursor["report"][1] or bool(resolved)
            cursor["tick"] = [now, time.time() - now]
            context.update_cursor(json.dumps(cursor, sort_keys=True))
            yield SkipReason(f"host saturated: load {load:.2f} per core > max_load_per_core "
                             f"{policy.max_load_per_core}; resolved {len(resolved)} predictions")
            return

        shadow_runs = recent_shadow_runs(instance, now - 2 * ttl_s)
        existing = {r.tags.get(PREDICTION_TAG) for r in shadow_runs}
        existing |= {r.prediction_id for r in recent if r.stage in RESOLVED}   # settled runs may be purged
        cursor["launch_s"] = update_launch_estimate(cursor["launch_s"], _launch_samples(instance, shadow_runs, now))
        overhead = max(config.launch_overhead_s, cursor["launch_s"] or 0.0)   # what launching really costs here
        in_flight: dict[str, int] = {}
        for r in shadow_runs:
            if r.status in IN_FLIGHT:
                in_flight[r.tags.get(PARENT_TAG, "")] = in_flight.get(r.tags.get(PARENT_TAG, ""), 0) + 1
        pending = {pid for pid, ts in cursor["launched"].items()
                   if pid not in existing and now - ts <= config.pending_grace_s}
        total = sum(in_flight.values()) + len(pending)

        requests, records, notes, exists_cache, decided = [], [], [], {}, []

        def plan_instance(key: str, workflow: str, view: GroupView, fp: Fingerprint, cands: list[Candidate],
                          partition: str | None, live_jobs: set[str], extra_tags: dict | None = None) -> None:
            nonlocal total
            durations = {a: d.mean for a, d in fp.timing.duration.items()}
            local = {a: StepInfo(i.assets, i.critical, i.deps, durations.get(a), i.partitioned, i.refusal)
                     for a, i in catalog.items()}
            needed = {d for c in cands if c.activity in local for d in local[c.activity].deps}
            available = _available(instance, view, local, set(fp.vocab.activities), needed, partition, exists_cache)
            result = plan(workflow=workflow, workflow_key=key, fingerprint_hash=fp.content_hash,
                          candidates=cands, catalog=local, available=available, done=set(view.prefix),
                          policy=state, prefix_length=len(view.prefix),
                          in_flight_total=total, in_flight_workflow=in_flight.get(key, 0),
                          already_launched=existing | set(cursor["launched"]),
                          partition_key=partition, launch_overhead_s=overhead,
                          launches_this_tick=len(requests), live_jobs=live_jobs)
            if preparer.active and view.records:
                recs, prep_notes = preparer.prepare(
                    prep, budget, instance=instance, log=context.log, workflow_key=key, view=view,
                    fingerprint_hash=fp.content_hash, candidates=cands, catalog=local, available=available,
                    partition=partition, open_ids=open_prep, now=now)
                prepared.extend(recs)
                notes.extend(prep_notes)
            decided.extend(changed(decisions_of(result, cands, workflow=workflow, workflow_key=key,
                                                fingerprint_hash=fp.content_hash, now_ms=int(now * 1000)), written))
            notes.extend(f"{key}: {act}: {why}" for act, why in result.skipped.items()
                         if not why.startswith(("critical", "already")))
            if not cands and view.in_progress:
                notes.append(f"{key}: no prediction after {view.prefix[-3:]}")
            for act, why in result.skipped.items():
                if why.startswith(("policy", "cap")):
                    pid = prediction_id(key, act, fp.content_hash)
                    if pid not in cursor["predicted"]:
                        cursor["predicted"][pid] = now
                        prob = next((c.probability for c in cands if c.activity == act), None)
                        records.append(OutcomeRecord(pid, "predicted", int(now * 1000), workflow=workflow,
                                                     workflow_key=key, activity=act, probability=prob,
                                                     reason=why))
            for work in result.work:
                own = catalog[work.activity].assets
                tags = {
                    PARENT_TAG: key, PROBABILITY_TAG: f"{work.probability:.6f}", ACTIVITY_TAG: work.activity,
                    TARGETS_TAG: json.dumps(list(own)), POSITION_TAG: str(work.position),
                    PREFIX_LEN_TAG: str(len(view.prefix)), PREDICTED_AT_TAG: f"{now:.3f}",
                    SHADOW_WORKFLOW_TAG: workflow,
                    # its own workflow key: a shadow run never joins the live instance's case
                    WORKFLOW_TAG: "shadow:" + work.prediction_id, **(extra_tags or {}),
                }
                requests.append(shadow_request(work.assets, work.partition_key, prediction_id=work.prediction_id,
                                               tags=tags, run_key=work.run_key, asset_job=job_name))
                cursor["launched"][work.prediction_id] = now
                cursor["predicted"][work.prediction_id] = now
                total += 1
                in_flight[key] = in_flight.get(key, 0) + 1
                for stage in ("predicted", "launched"):
                    records.append(OutcomeRecord(work.prediction_id, stage, int(now * 1000), workflow=workflow,
                                                 workflow_key=key, activity=work.activity,
                                                 probability=work.probability))

        groups = live_groups(instance, now, chain_gap_s, family_of)
        for key, seed in sorted(groups.items()):
            view = views.get(key) or group_view(instance, key, seed, family_of)
            views[key] = view
            if not view.records:
                continue
            fp = fingerprints.get(view.workflow)
            if fp is None or fp.reason is not None or not fp.content_hash:
                notes.append(f"{key}: no usable fingerprint for {view.workflow}")
                continue
            first = view.records[0].dagster_run
            start_s = view.steps[0][0] if view.steps else now
            attrs = case_attrs(first.tags, start_s)
            cands = _candidates(fp, view, attrs, now, config.horizon, policy.min_probability)
            plan_instance(key, view.workflow, view, fp, cands, first.tags.get(PARTITION_TAG),
                          {r.dagster_run.job_name for r in view.records if not r.dagster_run.is_finished})
        if config.schedule_horizon_s is not None:
            jobs = {a.split("/", 1)[0] for a, i in catalog.items() if not i.critical}
            busy = {r.dagster_run.job_name for recs in groups.values() for r in recs if not r.dagster_run.is_finished}
            for up in upcoming_runs(instance, repo, now, config.schedule_horizon_s, jobs, notes):
                key = upcoming_key(instance, up.job_name, up.partition, up.run_tags, up.tick_s, family_of)
                if key in groups:
                    continue                  # a live instance: planned above
                view = views.get(key) or group_view(instance, key, family_of=family_of)
                views[key] = view
                view.planned = view.planned or up.job_name
                fp = fingerprints.get(view.workflow)
                if fp is None or fp.reason is not None or not fp.content_hash:
                    notes.append(f"{key}: no usable fingerprint for {view.workflow}")
                    continue
                first = view.records[0].dagster_run.tags if view.records else up.run_tags
                attrs = case_attrs(first, view.steps[0][0] if view.steps else up.tick_s)
                cands = [c for c in _scheduled_candidates(fp, view.prefix, attrs, up.tick_s - now, config.horizon,
                                                          policy.min_probability)
                         if c.activity.split("/", 1)[0] == up.job_name]
                plan_instance(key, view.workflow, view, fp, cands, up.partition, busy,
                              {SCHEDULED_FOR_TAG: f"{up.tick_s:.0f}"})
        stored = record_outcomes(signals, records + prepared)
        signals.write_decisions(decided)
        news = any(d.differs_from(written.get(d.prediction_id)) for d in decided)   # not ETA refreshes
        written.update((d.prediction_id, d) for d in decided)
        for pid in [p for p, d in written.items() if now * 1000 - d.ts_ms > ttl_s * 1000]:
            del written[pid]
        cursor["report"][1] = cursor["report"][1] or bool(news or stored or resolved)
        events = _report_events(cursor, now, config.report_interval_s, repo, instance, signals, policy,
                                config.report_window_days, context.log)
        cursor["tick"] = [now, time.time() - now]
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        skip = None
        if not requests:
            summary = f"no shadow work; resolved {len(resolved)} predictions"
            if preparer.active:
                summary += (f"; prefetched {sum(r.nbytes for r in prepared if r.stage == 'prefetch')} bytes, "
                            f"{sum(r.stage == 'warmup' for r in prepared)} warm-up(s), {len(settled)} settled")
                notes.extend(prep.notes)
            skip = SkipReason("; ".join([summary] + notes[:5]))
        yield SensorResult(run_requests=requests, skip_reason=skip, asset_events=events)

    return _speculative_sensor


def speculation_definitions(assets: Iterable, *, config: SpeculationConfig | None = None,
                            storage: ShadowStorage | None = None, report: bool = True,
                            read_only_resources: Iterable[str] = ()):
    """The shadow job, the speculative sensor and the `speculation_report` asset (with
    `REPORT_JOB`, which logs it) for `assets` (the user's assets, already passed through
    `guard_assets`): merge with `Definitions.merge`. `shadow_definitions(user_defs)` calls this for
    you and logs the report from its refit job instead."""
    from dagster import Definitions

    from shadow_dagster.dagster.reported import reporting_job
    from shadow_dagster.dagster.speculation_report import build_speculation_report

    config = SpeculationConfig() if config is None else config
    job = shadow_job(assets, read_only_resources=read_only_resources)
    sensor_def = build_speculative_sensor(job=job, config=config, storage=storage)
    if not report:
        return Definitions(jobs=[job], sensors=[sensor_def])
    reported = build_speculation_report(storage=storage, policy=config.policy, window_days=config.report_window_days)
    return Definitions(assets=[reported.spec], jobs=[job, reporting_job(REPORT_JOB, [reported])],
                       sensors=[sensor_def])


def speculation_pending(instance) -> int:
    """Shadow runs still in flight (for reports and tests)."""
    return sum(1 for r in instance.get_runs(filters=RunsFilter(tags={SHADOW_TAG: "true"})) if r.status in IN_FLIGHT)


__all__ = ["REPORT_JOB", "RUNNER_JOB_NAME", "SHADOW_JOB_NAME", "SPECULATIVE_SENSOR_NAME", "build_catalog", "build_speculative_sensor",
           "live_groups", "shadow_job", "speculation_definitions", "speculation_pending"]
