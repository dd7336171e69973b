"""Pre-fetch and pre-allocation for predicted steps, critical ones included (nothing is executed).

Called by the speculative sensor each tick:
- `Preparer.prepare(...)`, for one live instance's predicted steps (most probable first): copies
  the live files of their input assets that already exist into the prefetch cache of the
  `ShadowIOManager` that stores them (live runs read through it), within a per-tick byte and time
  budget, and calls `warm_up()` of the `WarmableResource`s the steps require, once per (workflow
  key, resource key). Each becomes an outcome row: "prefetch" (bytes, seconds, sources) or
  "warmup" (seconds; reason "failed: ..." when the hook raised).
- `Preparer.settle(...)`, the one place that undoes them: when the live instance started the step
  (or, for a warm-up, any step requiring the resource) the preparation is "used"; when it failed,
  was cancelled, took another branch, ended without the step, or the preparation outlived the TTL,
  the prefetched cache entries are discarded and `release()` is called ("release").
Pre-fetch only reads live storage; it writes only the cache, a directory disjoint from it.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field

from dagster import AssetKey

from shadow_dagster.dagster.job_graph import definition_graph
from shadow_dagster.dagster.live_groups import GroupView, LiveViews
from shadow_dagster.store.outcomes import PREPARED, SETTLED, OutcomeRecord, record_outcomes
from shadow_dagster.dagster.warmup import call_hook, warmable_resource_keys
from shadow_dagster.speculation.config import PrepareConfig
from shadow_dagster.speculation.planner import Candidate, StepInfo
from shadow_dagster.speculation.settle import abandoned, expired
from shadow_dagster.speculation.prefetch import PrefetchCache


@dataclass
class Budget:
    """What one tick may still spend."""

    bytes_left: int
    prefetch_until: float
    warmup_until: float

    @classmethod
    def start(cls, config: PrepareConfig) -> Budget:
        now = time.monotonic()
        return cls(config.prefetch_budget_bytes, now + config.prefetch_budget_s, now + config.warmup_budget_s)


@dataclass
class RepoPrep:
    """What a repository offers: prefetch caches by IO manager key, warmable resources, step resources."""

    stores: dict[str, tuple[str, PrefetchCache]] = field(default_factory=dict)   # io key -> (base_dir, cache)
    warmables: dict[str, object] = field(default_factory=dict)                  # resource key -> definition
    resources: dict[str, tuple[str, ...]] = field(default_factory=dict)         # activity -> resource keys
    io_keys: dict[str, str] = field(default_factory=dict)                       # asset -> io manager key
    partitioned: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def preparation_id(stage: str, workflow_key: str, target: str, ts: float) -> str:
    """Id of a preparation: one open per (stage, workflow key, activity or resource); a new one after
    it is settled (the same step predicted again after a release is prepared afresh)."""
    digest = hashlib.sha256(f"{stage}\x1f{workflow_key}\x1f{target}\x1f{ts:.3f}".encode()).hexdigest()[:24]
    return f"{stage}-{digest}"


def _open_key(rec: OutcomeRecord) -> tuple[str, str, str]:
    return (rec.stage, rec.workflow_key or "", rec.resource if rec.stage == "warmup" else rec.activity or "")


def live_path(base_dir: str, asset: str, partition: str | None, partitioned: bool) -> str | None:
    """The file FilesystemIOManager reads for `asset` (base_dir/asset/path[/partition])."""
    if partitioned and partition is None:
        return None
    parts = list(AssetKey.from_user_string(asset).path) + ([partition] if partitioned else [])
    return os.path.abspath(os.path.join(base_dir, *parts))


def inspect_repository(repo, instance, shadow_job_name: str) -> RepoPrep:
    from shadow_dagster.dagster.io_manager import ShadowIOManager

    prep = RepoPrep(warmables=warmable_resource_keys(repo))
    for key, rdef in repo.get_top_level_resources().items():
        cfg = getattr(getattr(rdef, "resource_fn", None), "__self__", None)
        if isinstance(cfg, ShadowIOManager):
            cache = cfg.prefetch_cache(instance)
            if cache is not None:
                prep.stores[key] = (cfg.dirs(instance)[0], cache)
    if not prep.stores:
        prep.notes.append("prefetch skipped: no ShadowIOManager with a prefetch cache among the resources")
    for node in repo.asset_graph.asset_nodes:
        name = node.key.to_user_string()
        prep.io_keys[name] = node.io_manager_key
        if node.partitions_def is not None:
            prep.partitioned.add(name)
    for job in repo.get_all_jobs():
        if job.name == shadow_job_name or job.name.startswith("__"):
            continue
        _, nodes = definition_graph(job)
        for step_key, info in nodes.items():
            keys = tuple(k for k in info.get("required_resources", ()) if k in prep.warmables)
            if keys:
                prep.resources[f"{job.name}/{step_key}"] = keys
    return prep


class Preparer:
    """Pre-fetch, warm-up and their settlement for one speculative sensor."""

    def __init__(self, config: PrepareConfig, shadow_job_name: str):
        self.config = config
        self.shadow_job_name = shadow_job_name
        self._repos: dict = {}

    @property
    def active(self) -> bool:
        return self.config.prefetch or self.config.warmup

    def repo(self, repo, instance) -> RepoPrep:
        """The repository's RepoPrep, inspected once per (repository, instance); a misconfigured
        ShadowIOManager turns preparation off with a note instead of failing the tick."""
        cached = self._repos.get(id(repo))
        if cached is None or cached[0] is not repo or cached[1] is not instance:
            try:
                prep = inspect_repository(repo, instance, self.shadow_job_name)
            except Exception as exc:  # noqa: BLE001 - reported in the tick's skip message
                prep = RepoPrep(notes=[f"pre-fetch and warm-up off: {type(exc).__name__}: {exc}"])
            cached = self._repos[id(repo)] = (repo, instance, prep)
        return cached[2]

    # ------------------------------------------------------------------ ahead of the step
    def prepare(self, rp: RepoPrep, budget: Budget, *, instance, log, workflow_key: str, view: GroupView,
                fingerprint_hash: str, candidates: list[Candidate], catalog: dict[str, StepInfo],
                available: set[str], partition: str | None, open_ids: dict[tuple[str, str, str], str],
                now: float) -> tuple[list[OutcomeRecord], list[str]]:
        """Prefetch inputs and warm resources of `candidates`; `open_ids` (from `settle`) is updated."""
        records, notes = [], []
        prefix_len = len(view.prefix)
        for cand in sorted(candidates, key=lambda c: (-c.probability, c.depth, c.activity)):
            act = cand.activity
            common = dict(workflow=view.workflow, workflow_key=workflow_key, activity=act,
                          probability=cand.probability, position=prefix_len + cand.depth - 1,
                          prefix_length=prefix_len)
            if self.config.prefetch and act in catalog:
                sources, nbytes, seconds = self._prefetch(rp, budget, catalog[act].deps, available, partition, notes)
                if sources:
                    okey = ("prefetch", workflow_key, act)
                    pid = open_ids.setdefault(okey, preparation_id(*okey, now))
                    records.append(OutcomeRecord(pid, "prefetch", int(now * 1000), nbytes=nbytes,
                                                 seconds=seconds, sources=tuple(sources), **common))
            if self.config.warmup:
                for rkey in rp.resources.get(act, ()):
                    okey = ("warmup", workflow_key, rkey)
                    if okey in open_ids:
                        continue
                    if time.monotonic() > budget.warmup_until:
                        notes.append(f"{workflow_key}: warm-up of {rkey} deferred: tick warm-up budget spent")
                        continue
                    t0, reason = time.monotonic(), None
                    try:
                        call_hook(rp.warmables[rkey], rkey, "warm_up", instance)
                    except Exception as exc:  # noqa: BLE001 - a user hook never fails the tick
                        reason = f"failed: {type(exc).__name__}: {exc}"
                        log.warning(f"shadow-dagster: warm-up of resource {rkey!r} for {act} {reason}")
                    open_ids[okey] = preparation_id(*okey, now)
                    records.append(OutcomeRecord(open_ids[okey], "warmup", int(now * 1000),
                                                 resource=rkey, seconds=time.monotonic() - t0, reason=reason,
                                                 **common))
        return records, notes

    def _prefetch(self, rp: RepoPrep, budget: Budget, deps, available, partition, notes):
        sources, nbytes, t0 = [], 0, time.monotonic()
        for dep in deps:
            if dep not in available or rp.io_keys.get(dep) not in rp.stores:
                continue
            base_dir, cache = rp.stores[rp.io_keys[dep]]
            path = live_path(base_dir, dep, partition, dep in rp.partitioned)
            if path is None:
                continue
            try:
                st = os.stat(path)
                have = cache.lookup(path)
                if have is not None and (have.size, have.mtime_ns) == (st.st_size, st.st_mtime_ns):
                    continue                            # already cached at this identity
                if st.st_size > budget.bytes_left or time.monotonic() > budget.prefetch_until:
                    notes.append(f"prefetch of {dep} deferred: tick budget spent")
                    continue
                entry = cache.put_file(path)
            except OSError as exc:
                notes.append(f"prefetch of {dep} failed: {exc}")
                continue
            if entry is not None:
                sources.append(entry.source)
                nbytes += entry.size
                budget.bytes_left -= entry.size
        return sources, nbytes, time.monotonic() - t0

    # ------------------------------------------------------------------ settle (rollback)
    def settle(self, rp: RepoPrep, *, instance, signals, log, outcomes: list[OutcomeRecord],
               views: LiveViews, now: float, ttl_s: float, chain_gap_s: float,
               divergence_slack: int) -> tuple[list[OutcomeRecord], dict[tuple[str, str, str], str]]:
        """Settle open preparations; returns the settlement rows and the ids of those still open."""
        done = {r.prediction_id for r in outcomes if r.stage in SETTLED}
        open_by_pid: dict[str, list[OutcomeRecord]] = {}
        for r in outcomes:
            if r.stage in PREPARED and r.prediction_id not in done:
                open_by_pid.setdefault(r.prediction_id, []).append(r)
        out, still_open = [], {}
        for pid, recs in open_by_pid.items():
            first = recs[0]
            key = first.workflow_key or ""
            verdict = self._verdict(rp, first, views.get(key), now, ttl_s, chain_gap_s, divergence_slack)
            if verdict is None:
                still_open[_open_key(first)] = pid
                continue
            stage, reason = verdict
            t0 = time.monotonic()
            if stage == "release":
                reason = self._release(rp, recs, open_by_pid, pid, instance, log, reason)
            out.append(OutcomeRecord(pid, stage, int(now * 1000), workflow=first.workflow, workflow_key=key,
                                     activity=first.activity, probability=first.probability,
                                     resource=first.resource, seconds=time.monotonic() - t0, reason=reason,
                                     sources=tuple(s for r in recs for s in r.sources)))
        record_outcomes(signals, out)
        return out, still_open

    def _release(self, rp, recs, open_by_pid, pid, instance, log, reason: str) -> str:
        first = recs[0]
        if first.stage == "warmup":
            rdef = rp.warmables.get(first.resource)
            if rdef is None:
                return f"{reason}; resource {first.resource!r} is no longer defined"
            try:
                call_hook(rdef, first.resource, "release", instance)
            except Exception as exc:  # noqa: BLE001 - a user hook never fails the tick
                log.warning(f"shadow-dagster: release of resource {first.resource!r} failed: {exc}")
                return f"{reason}; release failed: {type(exc).__name__}: {exc}"
            return reason
        still_wanted = {s for other, rs in open_by_pid.items() if other != pid for r in rs for s in r.sources}
        dropped = 0
        for r in recs:
            for source in r.sources:
                if source in still_wanted:
                    continue
                for _, cache in rp.stores.values():
                    dropped += cache.discard(source)
        return f"{reason}; {dropped} prefetched input(s) discarded"

    @staticmethod
    def _verdict(rp: RepoPrep, rec: OutcomeRecord, view: GroupView, now: float, ttl_s: float,
                 chain_gap_s: float, divergence_slack: int) -> tuple[str, str] | None:
        start = rec.prefix_length or 0
        later = view.prefix[start:]
        if rec.stage == "warmup":
            user = next((a for a in later if rec.resource in rp.resources.get(a, ())), None)
            if user is not None:
                return "used", f"live step {user} started"
        elif rec.activity in later:
            return "used", f"live step {rec.activity} started"
        why = abandoned(view.prefix, start=start, position=rec.position if rec.position is not None else start,
                        activity=rec.activity, failed=view.failed, ended_at=view.ended_at, now=now,
                        chain_gap_s=chain_gap_s, divergence_slack=divergence_slack)
        if not why and not view.records:
            why = "live instance not found"
        why = why or expired(rec.ts_ms / 1000, now, ttl_s)
        return ("release", why) if why else None


__all__ = ["Budget", "PrepareConfig", "Preparer", "RepoPrep", "inspect_repository", "live_path", "preparation_id"]
