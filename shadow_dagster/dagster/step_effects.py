"""Resource writes of shadow steps: recorded as effects in the shadow store, promoted on reuse.

In a shadow run every step body runs inside a `StepWorkspace` (`shadow_dagster.envs`), where
shadow-aware resources (`ShadowDuckDBResource`, `ShadowFiles`) put what they write. A step that
wrote through them and returns a `MaterializeResult` or nothing (the usual style of assets that
write tables and files through resources) leaves an `EffectsRecord` under its provenance key; a
live step with the same key promotes it instead of running its body.
"""

from __future__ import annotations

import contextlib
import threading

from dagster import DataVersion, MaterializeResult, MetadataValue

from shadow_dagster.envs.record import EffectsRecord, PromotionIncomplete, target_of
from shadow_dagster.envs.record import promote as promote_record
from shadow_dagster.envs.workspace import open_workspace
from shadow_dagster.tags import CONTENT_HASH, PREDICTION_TAG, PROVENANCE_KEY, REUSED_FROM, SECONDS_SAVED

EFFECTS_META = "shadow_dagster/effects"   # materialization metadata: what a shadow step wrote / a reuse promoted

_with_effects: set[tuple[str, str]] = set()   # (run id, step key) of shadow steps whose value must not be reused
_lock = threading.Lock()


def run_root(instance, run_id: str):
    """Where a shadow run's environments and its steps' outboxes live: next to its shadow outputs."""
    from shadow_dagster.dagster.io_manager import default_store

    return default_store(instance).effects_dir(run_id)


@contextlib.contextmanager
def step_workspace(step):
    """The shadow step's workspace (shadow-aware resources write into it while it is open)."""
    with open_workspace(run_root(step.instance, step.run_id), step.step.key) as workspace:
        yield workspace


def wrote_through_resources(run_id: str, step_key: str) -> bool:
    """The shadow step changed something through a shadow-aware resource (so its returned value
    alone does not stand for what it did)."""
    with _lock:
        return (run_id, step_key) in _with_effects


def keep_unreusable(step, workspace) -> None:
    """After a body whose effects cannot be recorded: mark them so the step's values are not reused."""
    if workspace.effects():
        with _lock:
            _with_effects.add((step.run_id, step.step.key))
        step.log.warning(f"shadow step {step.step.key} wrote through resources in a generator or async body: "
                         "not reusable")
    else:
        workspace.discard()


def record_effects(step, asset_key, workspace, result, seconds: float):
    """After a shadow step's body: keep its effects under its provenance key; returns the result
    to hand to Dagster (a MaterializeResult naming the key when effects were recorded)."""
    from shadow_dagster.dagster.io_manager import default_store
    from shadow_dagster.dagster.step_provenance import compute_step_provenance

    effects, unpromotable = workspace.effects(), workspace.unpromotable()
    if not effects and not unpromotable:
        workspace.discard()
        return result
    with _lock:
        _with_effects.add((step.run_id, step.step.key))
    why = None
    if unpromotable:
        why = "; ".join(unpromotable)
    elif asset_key is None or len(step.op_def.output_defs) != 1:
        why = "it has asset checks or several outputs"
    elif not (result is None or isinstance(result, MaterializeResult)):
        why = "it writes through resources and returns a value (return a MaterializeResult, or nothing)"
    if why:
        step.log.warning(f"shadow step {step.step.key} is not reusable: {why}")
        return result
    prov = compute_step_provenance(step, asset_key, live_inputs_only=False)
    if prov.key is None:
        step.log.warning(f"shadow effects of {prov.asset_key} are not reusable: {prov.reason}")
        return result
    user_meta = dict(result.metadata or {}) if result is not None else {}
    version = result.data_version.value if result is not None and result.data_version else None
    record = EffectsRecord(tuple(effects), user_meta, version)
    out = default_store(step.instance).write(
        prov.key, record.dumps(), asset_key=prov.asset_key, partition_key=prov.partition_key, run_id=step.run_id,
        prediction_id=step.run_tags.get(PREDICTION_TAG), compute_seconds=seconds, data_version=version)
    step.log.info(f"shadow effects of {prov.asset_key} kept in shadow storage: {record.describe()}")
    return _result(result, {**user_meta, PROVENANCE_KEY: prov.key, CONTENT_HASH: out.content_hash,
                            EFFECTS_META: record.describe()}, version)


def _result(result, metadata: dict, version: str | None) -> MaterializeResult:
    base = result if isinstance(result, MaterializeResult) else MaterializeResult()
    return MaterializeResult(asset_key=base.asset_key, metadata=metadata, check_results=base.check_results,
                             data_version=DataVersion(version) if version else base.data_version, tags=base.tags)


def live_targets(step) -> set[tuple[str, str]]:
    """(kind, live store) of every shadow-aware resource the step requires."""
    out = set()
    for key in step.op_def.required_resource_keys:
        resource = getattr(step.resources, key, None)
        target = getattr(resource, "shadow_target", None)
        if callable(target):
            out.add(target())
    return out


def promote_effects(step, prov_key: str, out, record: EffectsRecord) -> MaterializeResult | None:
    """Promote a shadow step's effects for the live step; None (then the body runs) when refused."""
    from shadow_dagster.dagster.io_manager import default_store

    live = live_targets(step)
    foreign = sorted({t[1] for t in map(target_of, record.effects) if t not in live})
    if foreign:   # the live step's resources point elsewhere (other config or environment)
        step.log.warning(f"shadow effects {prov_key} land in {', '.join(foreign)}, which this step's resources do "
                         "not write; computing the step")
        return None
    try:
        promote_record(record)
    except PromotionIncomplete:
        raise   # part is live: computing on top could apply it twice
    except Exception as exc:  # noqa: BLE001 - nothing was applied: the step computes as without shadow-dagster
        step.log.warning(f"shadow effects {prov_key} not promoted ({exc}); computing the step")
        return None
    default_store(step.instance).mark_promoted(prov_key)
    step.log.info(f"promoted the effects of shadow run {out.run_id} into live storage: {record.describe()}")
    meta = {**record.metadata, REUSED_FROM: MetadataValue.dagster_run(out.run_id),
            SECONDS_SAVED: float(out.compute_seconds or 0.0), PROVENANCE_KEY: prov_key,
            CONTENT_HASH: out.content_hash, EFFECTS_META: record.describe()}
    return _result(None, meta, record.data_version)
