"""The planner: from a live instance's prediction to the shadow work worth launching (pure).

Given the predicted next steps, what each activity ("job/step") materialises, which assets are
already available to the instance, and the policy state, `plan(...)` returns `ShadowWork` items:
one per predicted non-critical activity whose inputs exist, or are produced by other non-critical
activities added to the same shadow run. Critical activities are never planned, not even as
producers. Prediction ids are deterministic (workflow key + activity + fingerprint content hash),
so a repeated plan names the same work and the same run key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from shadow_dagster.speculation.policy import PolicyState, expected_saving

RUN_KEY_PREFIX = "shadow-"


@dataclass(frozen=True)
class StepInfo:
    """What an activity materialises and needs (asset keys as user strings, e.g. "a/b")."""

    assets: tuple[str, ...]
    critical: bool = True
    deps: tuple[str, ...] = ()             # upstream asset keys of those assets (outside the step)
    duration_s: float | None = None        # expected compute seconds
    partitioned: bool = False
    refusal: str | None = None             # why a non-critical step may still not be pre-executed


@dataclass(frozen=True)
class Candidate:
    """A predicted future activity: probability of reaching it and seconds until it starts."""

    activity: str
    probability: float
    eta_s: float | None
    depth: int = 1                         # 1 = the very next step


@dataclass(frozen=True)
class ShadowWork:
    """One shadow run to launch."""

    prediction_id: str
    run_key: str
    workflow: str
    workflow_key: str
    activity: str
    assets: tuple[str, ...]                # the whole selection: the activity's assets and producers
    activities: tuple[str, ...]            # the activity first, then producers added for inputs
    probability: float
    eta_s: float | None
    expected_saving_s: float
    expected_cost_s: float
    position: int                          # index in the live sequence the activity is expected at
    partition_key: str | None = None


@dataclass
class Plan:
    """Work to launch, and why other candidates were left out (activity -> reason)."""

    work: list[ShadowWork] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def prediction_id(workflow_key: str, activity: str, fingerprint_hash: str) -> str:
    """Deterministic id of "this instance will run this activity", under one fingerprint."""
    for name, value in (("workflow_key", workflow_key), ("activity", activity),
                        ("fingerprint_hash", fingerprint_hash)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"prediction id needs a non-empty {name}, got {value!r}")
    digest = hashlib.sha256("\x1f".join((workflow_key, activity, fingerprint_hash)).encode()).hexdigest()
    return digest[:32]


def expand(predict: Callable[[Sequence[str]], Iterable[tuple[str, float, float | None]]],
           prefix: Sequence[str], *, horizon: int = 2, min_probability: float = 0.05,
           branch: int = 3) -> list[Candidate]:
    """Roll a one-step predictor forward `horizon` steps along its `branch` likeliest next steps.

    `predict(prefix)` yields (activity, probability, eta seconds). A path's probability is the
    product along it and its ETA the sum; paths below `min_probability` are cut. An activity's
    probability is that it starts within the horizon: the sum over the (disjoint) paths on which it
    first appears, so a step reached after either branch of a fork counts both; its ETA is the
    probability-weighted mean over those paths (unknown if any is). An activity already in the
    prefix is not a future step.
    """
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
    mass: dict[str, float] = {}
    eta_mass: dict[str, float | None] = {}
    first_depth: dict[str, int] = {}
    seen = set(prefix)
    frontier = [(list(prefix), 1.0, 0.0)]
    for depth in range(1, horizon + 1):
        nxt = []
        for path, p, eta in frontier:
            ranked = sorted(predict(path), key=lambda s: -s[1])[:branch]
            for activity, q, step_eta in ranked:
                prob = p * q
                if prob < min_probability:
                    continue
                total_eta = None if eta is None or step_eta is None else eta + step_eta
                if activity not in seen and activity not in path:
                    mass[activity] = mass.get(activity, 0.0) + prob
                    weighted = eta_mass.get(activity, 0.0)
                    eta_mass[activity] = None if weighted is None or total_eta is None else weighted + prob * total_eta
                    first_depth.setdefault(activity, depth)
                nxt.append((path + [activity], prob, total_eta))
        frontier = nxt
    best = [
        Candidate(a, round(min(1.0, m), 6), None if eta_mass[a] is None else eta_mass[a] / m, first_depth[a])
        for a, m in mass.items()
    ]
    return sorted(best, key=lambda c: (-c.probability, c.depth, c.activity))


def _producers(catalog: Mapping[str, StepInfo]) -> dict[str, str]:
    out: dict[str, str] = {}
    for activity, info in catalog.items():
        for asset in info.assets:
            out.setdefault(asset, activity)
    return out


def _closure(activity: str, catalog: Mapping[str, StepInfo], producer: Mapping[str, str],
             available: set[str], live_made: Mapping[str, str] | None = None) -> tuple[list[str], str | None]:
    """Activities one shadow run must execute to produce `activity`, or (.., reason) if impossible.

    `live_made` maps the assets of the jobs the live instance has a run of in flight to that job.
    Such an input is never re-made in a shadow run, by whichever job's step: the live run makes it
    (a shadow copy would duplicate its work and become the input's latest materialization, which
    the live step then cannot reuse from), so the work waits for it."""
    live_made = live_made or {}
    order: list[str] = []
    visiting: set[str] = set()

    def visit(act: str) -> str | None:
        if act in order:
            return None
        if act in visiting:
            return f"dependency cycle through {act}"
        info = catalog.get(act)
        if info is None:
            return f"{act} is not an asset step"
        if info.critical:
            return f"{act} is critical"
        if info.refusal:
            return f"{act} {info.refusal}"
        visiting.add(act)
        own = set(info.assets)
        for dep in info.deps:
            if dep in available or dep in own:
                continue
            if dep in live_made:
                return f"input {dep} is the live {live_made[dep]} run's to make (in flight): waiting for it"
            src = producer.get(dep)
            if src is None:
                return f"input {dep} does not exist yet and no step produces it"
            problem = visit(src)
            if problem:
                return f"input {dep}: {problem}"
        visiting.discard(act)
        order.append(act)
        return None

    reason = visit(activity)
    return ([], reason) if reason else (order[::-1], None)


def _job(activity: str) -> str:
    """The job of a "job/step" activity."""
    return activity.split("/", 1)[0]


def _too_late(eta_s: float | None, durations: Sequence[float], launch_overhead_s: float) -> str:
    """Why a shadow run would save nothing: it could not finish before the live run gets there."""
    when = ("may reach the step any moment (ETA 0.0 s)" if not eta_s
            else f"may reach the step in {eta_s:.1f} s (early ETA)")
    parts = [f"launch {launch_overhead_s:.1f} s"] if launch_overhead_s else []
    if len(durations) > 1:
        parts.append(f"producers {sum(durations[1:]):.1f} s")
    parts.append(f"compute {durations[0]:.1f} s")
    return (f"expected saving 0.0 s: the live run {when}, before a shadow run could finish it "
            f"({' + '.join(parts)} = {launch_overhead_s + sum(durations):.1f} s)")


def plan(
    *,
    workflow: str,
    workflow_key: str,
    fingerprint_hash: str,
    candidates: Sequence[Candidate],
    catalog: Mapping[str, StepInfo],
    available: Iterable[str],
    done: Iterable[str] = (),
    policy: PolicyState,
    prefix_length: int = 0,
    in_flight_total: int = 0,
    in_flight_workflow: int = 0,
    already_launched: Iterable[str] = (),
    partition_key: str | None = None,
    launch_overhead_s: float = 0.0,
    default_duration_s: float = 1.0,
    launches_this_tick: int = 0,
    live_jobs: Iterable[str] = (),
) -> Plan:
    """Shadow work for one workflow instance, best expected value first, within the policy's caps.

    `available`: asset keys the instance can read now (materialised by its finished steps, or
    produced outside this workflow). `done`: activities the instance already started (never
    re-planned). `already_launched`: prediction ids with a shadow run already (skipped, and they
    do not take capacity again: count them in `in_flight_*`). `launches_this_tick`: work already
    launched this tick for other instances (against the policy's `max_launches_per_tick`).
    """
    if not isinstance(catalog, Mapping):
        raise TypeError("catalog must map activity -> StepInfo")
    available = set(available)
    done = set(done)
    launched = set(already_launched)
    live_jobs = set(live_jobs)
    live_made = {a: _job(x) for x, info in catalog.items() if _job(x) in live_jobs for a in info.assets}
    producer = _producers(catalog)
    out = Plan()
    scored: list[tuple[float, ShadowWork]] = []
    for cand in candidates:
        act = cand.activity
        if act in done:
            out.skipped[act] = "already started by the live instance"
            continue
        info = catalog.get(act)
        if info is None:
            out.skipped[act] = "not an asset step (op steps cannot be selected by a RunRequest)"
            continue
        if info.critical:
            out.skipped[act] = "critical: never pre-executed"
            continue
        if info.refusal:
            out.skipped[act] = info.refusal
            continue
        if info.assets and set(info.assets) <= available:
            out.skipped[act] = "its assets already exist for this instance"
            continue
        acts, reason = _closure(act, catalog, producer, available, live_made)
        if reason:
            out.skipped[act] = reason
            continue
        pid = prediction_id(workflow_key, act, fingerprint_hash)
        if pid in launched:
            out.skipped[act] = "already launched"
            continue
        durations = [catalog[a].duration_s if catalog[a].duration_s is not None else default_duration_s
                     for a in acts]
        cost = float(sum(durations))
        # the producers must finish first: the step itself is saved only if all of it finishes in time
        saving = expected_saving(durations[0], None if cand.eta_s is None else max(
            0.0, cand.eta_s - sum(durations[1:])), launch_overhead_s, policy.config.deadline_margin)
        refusal = policy.refusal(cand.probability, saving, cost)
        if refusal is not None:
            if saving <= 0 and cand.probability >= policy.config.min_probability:
                refusal = (_too_late(cand.eta_s, durations, launch_overhead_s) if durations[0] > 0
                           else f"expected saving 0.0 s: the step took 0.0 s in its history, so a right guess "
                                f"saves no live time and no launch is worth its cost ({cost:.1f} s)")
            out.skipped[act] = f"policy: no launch: {refusal}"
            continue
        assets = tuple(dict.fromkeys(a for x in acts for a in catalog[x].assets))
        partitioned = any(catalog[a].partitioned for a in acts)
        work = ShadowWork(
            prediction_id=pid, run_key=RUN_KEY_PREFIX + pid, workflow=workflow, workflow_key=workflow_key,
            activity=act, assets=assets, activities=tuple(acts), probability=cand.probability,
            eta_s=cand.eta_s, expected_saving_s=round(saving, 6), expected_cost_s=round(cost, 6),
            position=prefix_length + cand.depth - 1,
            partition_key=partition_key if partitioned else None)
        scored.append((policy.net_value(cand.probability, saving, cost), work))
    room = policy.capacity(in_flight_total, in_flight_workflow)
    per_tick = policy.config.launch_cap
    tick_room = room if per_tick is None else max(0, per_tick - launches_this_tick)
    for i, (_, work) in enumerate(sorted(scored, key=lambda x: (-x[0], x[1].activity))):
        if i < min(room, tick_room):
            out.work.append(work)
        elif i < room:
            out.skipped[work.activity] = "cap on launches per tick reached"
        else:
            out.skipped[work.activity] = "cap on concurrent shadow runs reached"
    return out
