"""`@shadow_reusable`: let a live run take a verified shadow output instead of computing the asset.

Put it under `@asset` on a non-critical asset (`op_tags={"shadow_dagster/critical": "false"}` or the
same asset tag), whatever its IO manager. In a live run it computes the provenance key the step would
produce, looks up a complete shadow output with that key, checks the file's sha256, and returns the
stored value without running the body: `ShadowIOManager` then promotes the file atomically into
live storage, any other IO manager writes the value where it always does. Any mismatch or unknown
part runs the body. In a shadow run it runs the body and records its compute time. In both it
first applies the critical-step guard.
"""

from __future__ import annotations

import functools
import inspect
import time
import typing
from collections.abc import Callable
from typing import Any

from dagster import DataVersion, MaterializeResult, MetadataValue, Output

from shadow_dagster.dagster.compat import StepOutputHandle
from shadow_dagster.dagster.critical import current_step_context, guard_step, step_is_critical
from shadow_dagster.dagster.io_manager import (
    COMPUTE_SECONDS_META,
    DATA_VERSION_META,
    PROVENANCE_KEY_META,
    ShadowLiveIOManager,
    default_shadow_dir,
    default_store,
    deserialize,
)
from shadow_dagster.dagster.step_effects import promote_effects, record_effects, step_workspace
from shadow_dagster.dagster.step_provenance import compute_step_provenance
from shadow_dagster.envs.record import PromotionIncomplete
from shadow_dagster.envs.record import loads as effects_record
from shadow_dagster.speculation.atomic import ContentMismatch
from shadow_dagster.speculation.object_paths import may_hold
from shadow_dagster.tags import CONTENT_HASH, REUSED_FROM, SECONDS_SAVED, is_shadow_run


def _single_asset_key(step_context):
    key = single_asset_key(step_context)
    if key is None:
        raise TypeError(f"@shadow_reusable supports single-asset steps; step {step_context.step.key!r} "
                        f"produces {len(list(step_context.get_output_asset_keys()))} assets")
    return key


def _io_manager(step_context, asset_key):
    output_name = step_context.job_def.asset_layer.get_op_output_name(asset_key)
    return step_context.get_io_manager(StepOutputHandle(step_context.step.key, output_name))


def try_reuse(step_context, asset_key, *, values: bool = True) -> Output | MaterializeResult | None:
    """A verified shadow result for this live step, or None (then compute): the effects of a shadow
    step that wrote through shadow-aware resources, promoted into live storage, or (with `values`)
    an Output carrying the shadow value."""
    prov = compute_step_provenance(step_context, asset_key, live_inputs_only=True)
    if prov.key is None:
        step_context.log.info(f"shadow reuse refused for {prov.asset_key}: {prov.reason}")
        return None
    io = _io_manager(step_context, asset_key) if values else None
    # ShadowIOManager keeps values in its own store (it promotes the stored file)
    own = io.store if isinstance(io, ShadowLiveIOManager) else None
    roots = [default_shadow_dir(step_context.instance)] + ([own.root] if own is not None else [])
    if not any(may_hold(root, prov.key) for root in roots):
        return None                 # no payload with this key anywhere: no store (or SQLAlchemy) opened
    default = store = default_store(step_context.instance)
    if own is not None:
        store = own
    out = store.get_reusable(prov.key)
    if out is None and store is not default:   # effects are always in the default store
        store = default
        out = store.get_reusable(prov.key)
    if out is None or out.asset_key != prov.asset_key or out.partition_key != prov.partition_key:
        return None
    try:
        payload = store.read(out)
    except (ContentMismatch, FileNotFoundError) as exc:
        step_context.log.warning(f"shadow output {prov.key} failed verification ({exc}); recomputing")
        return None
    record = effects_record(payload)
    if record is not None:
        return promote_effects(step_context, prov.key, out, record)
    if not values:
        return None
    step_context.log.info(f"reusing shadow output of run {out.run_id} for {prov.asset_key}")
    # the provenance key in the metadata also lets steps downstream key as they did in the shadow run
    metadata = {REUSED_FROM: MetadataValue.dagster_run(out.run_id),
                SECONDS_SAVED: float(out.compute_seconds or 0.0),
                PROVENANCE_KEY_META: prov.key, CONTENT_HASH: out.content_hash}
    return Output(
        deserialize(payload),
        output_name=step_context.job_def.asset_layer.get_op_output_name(asset_key),
        metadata=metadata,
        data_version=DataVersion(out.data_version) if out.data_version else None,
    )


def call_step_body(step, fn: Callable[..., Any], args, kwargs, asset_key, *, as_output: bool) -> Any:
    """Run a guarded step body the shadow-aware way. Live: reuse a verified shadow result when the
    step is non-critical (values only when `as_output`, i.e. the body may return an Output).
    Shadow: run the body in a step workspace, so shadow-aware resources write shadow storage, and
    keep what it wrote (`step_effects.record_effects`)."""
    output_name = step.job_def.asset_layer.get_op_output_name(asset_key) if asset_key is not None else None
    if not is_shadow_run(step.run_tags):
        if asset_key is not None and not step_is_critical(step):
            try:
                reused = try_reuse(step, asset_key, values=as_output)
            except PromotionIncomplete:
                raise
            except Exception as exc:  # noqa: BLE001 - the shadow store is never a reason for a live step to fail
                step.log.warning(f"shadow reuse check failed ({type(exc).__name__}: {exc}); computing the step")
                reused = None
            if reused is not None:
                return reused
        result = fn(*args, **kwargs)
        return _as_output(result, {}, output_name) if as_output else result
    with step_workspace(step) as workspace:
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - started
    result = record_effects(step, asset_key, workspace, result, seconds)
    return _as_output(result, {COMPUTE_SECONDS_META: seconds}, output_name) if as_output else result


def single_asset_key(step_context):
    """The asset the step produces when it produces exactly one, else None."""
    keys = list(step_context.get_output_asset_keys())
    return keys[0] if len(keys) == 1 else None


def _as_output(result: Any, extra: dict, output_name: str) -> Any:
    """Return an Output carrying `extra` metadata (MaterializeResult and the like pass through)."""
    if isinstance(result, Output):
        if result.data_version is not None and extra:
            extra = {**extra, DATA_VERSION_META: result.data_version.value}
        if not extra:
            return result
        return Output(result.value, output_name=result.output_name, metadata={**result.metadata, **extra},
                      data_version=result.data_version, tags=result.tags)
    if type(result).__name__ == "MaterializeResult":
        return result
    return Output(result, output_name=output_name, metadata=extra)


def _output_annotation(fn: Callable[..., Any]) -> Any:
    """Output[T] for a function annotated T, so Dagster accepts the Output objects the wrapper returns."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolved hints fall back to an untyped Output
        hints = {}
    ret = hints.get("return", inspect.Parameter.empty)
    if ret is inspect.Parameter.empty or ret is Any:
        return Output
    if ret is MaterializeResult or ret is None or ret is type(None):
        return ret
    if ret is Output or typing.get_origin(ret) is Output:
        return ret
    return Output[ret]


def shadow_reusable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for a single-asset body (use under @asset): guard, reuse in live runs, timing in shadow runs."""
    if inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn):
        raise TypeError(f"@shadow_reusable needs a plain function that returns its value; {fn.__name__} "
                        "is a generator or coroutine")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        step = current_step_context()
        guard_step(step)
        return call_step_body(step, fn, args, kwargs, _single_asset_key(step), as_output=True)

    wrapper.__annotations__ = {**getattr(fn, "__annotations__", {}), "return": _output_annotation(fn)}
    wrapper.__shadow_guarded__ = True
    return wrapper
