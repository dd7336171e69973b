"""The critical-step guard: a critical step never runs its body in a shadow run.

Enforced at execution time, in three places that all call `guard_step`:
- `@shadow_reusable` / `@critical_guard` wrappers, before the user's function body;
- `guard_assets(...)`, which rewraps the compute function of every asset it is given (decorated or
  not, with or without inputs) so the check runs before every body;
- the shadow IO manager, on every load_input and handle_output of a shadow run.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any

from dagster import AssetExecutionContext, AssetsDefinition, OpDefinition, OpExecutionContext, Output

from shadow_dagster.dagster.compat import DecoratedOpFunction
from shadow_dagster.tags import CRITICAL_TAG, is_critical, is_shadow_run
from shadow_dagster.errors import ShadowDagsterError


class ShadowCriticalStepError(ShadowDagsterError, RuntimeError):
    """A critical step (not tagged `shadow_dagster/critical: "false"`) was asked to run in a shadow run."""


def asset_is_critical(assets_def, key) -> bool:
    """Critical unless the asset's op tags or its own tags say `shadow_dagster/critical: "false"`
    (assets with no computation are never pre-executed)."""
    if not assets_def.is_executable:
        return True
    op_tags = getattr(assets_def.node_def, "tags", {}) or {}
    return is_critical(op_tags) and is_critical(assets_def.specs_by_key[key].tags or {})


def step_is_critical(step_context) -> bool:
    """Critical unless the op's tags, or the tags of every asset the step produces, say critical=false."""
    if not is_critical(step_context.op_def.tags):
        return False
    keys = [k for k in step_context.get_output_asset_keys() if step_context.job_def.asset_layer.has(k)]
    if keys and all(not is_critical(step_context.job_def.asset_layer.get(k).tags) for k in keys):
        return False
    return True


def guard_step(step_context) -> None:
    """Raise ShadowCriticalStepError when a critical step, or one that needs a resource that is not
    shadow-safe, executes inside a shadow run."""
    if not is_shadow_run(step_context.run_tags):
        return
    if step_is_critical(step_context):
        raise ShadowCriticalStepError(
            f"step {step_context.step.key!r} is critical and may not execute in shadow run "
            f"{step_context.run_id}; tag it {CRITICAL_TAG}='false' only if it has no side effects "
            "outside the asset store")
    from shadow_dagster.dagster.shadow_env import (
        input_io_keys,
        is_shadow_safe,
        read_only_from_tags,
        refusal,
        resources_written,
        unsafe_in_runner,
        unsafe_resources,
    )
    from shadow_dagster.dagster.step_provenance import registered_live_side

    job, read_only = step_context.job_def, read_only_from_tags(step_context.run_tags)
    if registered_live_side(step_context.run_id) is not None:   # the runner: outputs go to the shadow store
        unsafe = unsafe_in_runner(step_context.op_def.required_resource_keys,
                                  input_io_keys(job, step_context.node_handle, step_context.get_output_asset_keys()),
                                  job.resource_defs, read_only)
        # and check that they really do: every output IO manager is shadow-aware or the runner's stand-in
        unsafe += sorted(k for k in resources_written(step_context.op_def) - set(step_context.op_def.required_resource_keys)
                         if not (k in job.resource_defs and (is_shadow_safe(job.resource_defs[k])
                                                             or hasattr(job.resource_defs[k], "shadow_original"))))
    else:
        unsafe = unsafe_resources(resources_written(step_context.op_def), job.resource_defs, read_only)
    if unsafe:
        raise ShadowCriticalStepError(f"step {step_context.step.key!r} may not execute in shadow run "
                                      f"{step_context.run_id}: it {refusal(unsafe)}")


def current_step_context():
    """The StepExecutionContext of the op or asset body now executing."""
    try:
        ctx = OpExecutionContext.get()
    except Exception:  # noqa: BLE001 - re-raised with a clear message
        ctx = None
    if ctx is None:
        raise RuntimeError("no Dagster step is executing: call this inside an op or asset body")
    if isinstance(ctx, AssetExecutionContext):
        ctx = ctx.op_execution_context
    return ctx._step_execution_context  # noqa: SLF001 - the public context exposes no data versions


def _guarded(fn: Callable[..., Any], *, single_output: bool = False) -> Callable[..., Any]:
    """`fn` behind the guard. Plain functions also reuse verified shadow results in live runs and,
    in shadow runs, run in a step workspace (`reuse.call_step_body`); with `single_output` their
    return annotation becomes Output[T], so a reused value can be returned as an Output."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            step = current_step_context()
            guard_step(step)
            with _shadow_workspace(step):
                yield from fn(*args, **kwargs)
        return gen_wrapper
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args, **kwargs):
            step = current_step_context()
            guard_step(step)
            with _shadow_workspace(step):
                return await fn(*args, **kwargs)
        return async_wrapper

    from shadow_dagster.dagster.reuse import _output_annotation

    annotation = _output_annotation(fn) if single_output else None
    as_output = annotation is not None and (annotation is Output or typing.get_origin(annotation) is Output)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from shadow_dagster.dagster.reuse import call_step_body, single_asset_key

        step = current_step_context()
        guard_step(step)
        key = single_asset_key(step)
        return call_step_body(step, fn, args, kwargs, key, as_output=as_output and key is not None)
    if as_output:
        wrapper.__annotations__ = {**getattr(fn, "__annotations__", {}), "return": annotation}
    return wrapper


@contextlib.contextmanager
def _shadow_workspace(step):
    """Generator and async bodies: in a shadow run, resource writes go to a step workspace; they
    are never promoted (the body's results cannot be replaced), so its values are not reused."""
    if not is_shadow_run(step.run_tags):
        yield
        return
    from shadow_dagster.dagster.step_effects import keep_unreusable, step_workspace

    with step_workspace(step) as workspace:
        yield
    keep_unreusable(step, workspace)


def critical_guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator (under @asset/@op) that refuses to run the body of a critical step in a shadow run."""
    wrapped = _guarded(fn)
    wrapped.__shadow_guarded__ = True
    return wrapped


def _guard_op(op: OpDefinition) -> OpDefinition:
    fn = op.compute_fn
    if not isinstance(fn, DecoratedOpFunction):
        raise TypeError(f"op {op.name!r} has no decorated compute function; cannot guard it")
    if getattr(fn.decorated_fn, "__shadow_guarded__", False):
        return op
    new_fn = _guarded(fn.decorated_fn, single_output=len(op.output_defs) == 1)
    new_fn.__shadow_guarded__ = True
    return OpDefinition.dagster_internal_init(
        compute_fn=DecoratedOpFunction(new_fn), name=op.name, ins=op.ins, outs=op.outs,
        description=op.description, config_schema=op.config_schema,
        required_resource_keys=op.required_resource_keys, tags=op.tags, version=None,
        retry_policy=op.retry_policy, code_version=op.version, pool=op.pool)


def guard_assets(assets: Iterable[Any]) -> list[Any]:
    """Return the assets with every AssetsDefinition's compute function wrapped by the critical guard.

    Other definitions (source assets, specs, checks) pass through unchanged. Use it on everything a
    code location materialises, e.g. `Definitions(assets=guard_assets([...]))`.
    """
    out, guarded = [], {}
    for a in assets:
        if isinstance(a, AssetsDefinition) and a.is_executable and isinstance(a.node_def, OpDefinition):
            # one object listed twice (an autoloader finds an asset imported into a second module)
            # stays one object, which Dagster accepts; two copies would be duplicate keys
            if id(a) not in guarded:
                attrs = a.get_attributes_dict()
                attrs["node_def"] = _guard_op(a.node_def)
                guarded[id(a)] = (a, AssetsDefinition.dagster_internal_init(**attrs))
            a = guarded[id(a)][1]
        out.append(a)
    return out
