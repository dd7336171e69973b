"""Which resources a shadow run may touch: a step runs there only if every resource it writes
through is shadow-safe.

A resource is shadow-safe when its class derives from `ShadowSafe` (it writes nothing outside
shadow storage in a shadow run: `ShadowIOManager`, or a read-only resource) or when the user lists
its key in `with_shadow(..., read_only_resources=[...])`. Everything else (a `DuckDBResource`, a
function resource) may write live storage, so a step that needs it is refused, both when the
speculative sensor plans (the reason is in the tick's skip message) and in the shadow run itself,
before the step's body.

IO managers are different in runs of the shadow runner (`shadow_dagster.dagster.shadow_runner`):
there the outputs of the predicted assets never reach the user's IO manager (the runner puts the
shadow store in its place), so any IO manager is fine for outputs. Inputs the run did not make
are still read through the user's IO manager, so that one must read without side effects:
shadow-safe, listed read-only, or one of Dagster's filesystem / UPath IO managers. (An IO manager
that opens a database read-write to read, as DuckDB's does, would lock the live database.)
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping

from shadow_dagster.tags import PREFIX

READ_ONLY_TAG = PREFIX + "read_only_resources"   # shadow job tag: comma-separated resource keys


class ShadowSafe:
    """Mixin for resources that write nothing outside shadow storage in a shadow run."""


def is_shadow_safe(resource_def) -> bool:
    """True when the resource (a definition or a Pythonic resource) derives from ShadowSafe."""
    cls = getattr(resource_def, "configurable_resource_cls", None) or type(resource_def)
    return isinstance(cls, type) and issubclass(cls, ShadowSafe)


def _returns_materialize_result(op_def) -> bool:
    """The body is annotated `-> MaterializeResult`: Dagster then invokes no IO manager."""
    from dagster import MaterializeResult

    fn = getattr(getattr(op_def, "compute_fn", None), "decorated_fn", None)
    if fn is None:
        return False
    try:
        annotation = inspect.signature(fn).return_annotation
    except (TypeError, ValueError):
        return False
    return annotation is MaterializeResult or annotation == "MaterializeResult"


def resources_written(op_def) -> set[str]:
    """Resource keys the op can write through: its required resources and the IO managers of the
    outputs Dagster will store."""
    keys = set(op_def.required_resource_keys)
    skip_io = _returns_materialize_result(op_def)
    for out in op_def.output_defs:
        if not out.dagster_type.is_nothing and not skip_io:
            keys.add(out.io_manager_key)
    return keys


def reads_without_side_effects(resource_def) -> bool:
    """IO managers whose load_input only reads files: shadow-safe ones, Dagster's filesystem and
    in-memory IO managers and UPathIOManager subclasses."""
    from dagster import FilesystemIOManager, UPathIOManager, fs_io_manager, mem_io_manager

    resource_def = getattr(resource_def, "shadow_original", resource_def)   # the runner's stand-in reads through it
    if is_shadow_safe(resource_def) or resource_def is fs_io_manager or resource_def is mem_io_manager:
        return True
    cls = getattr(resource_def, "configurable_resource_cls", None) or type(resource_def)
    return isinstance(cls, type) and issubclass(cls, (FilesystemIOManager, UPathIOManager))


def unsafe_in_runner(required: Iterable[str], input_io_keys: Iterable[str], resource_defs: Mapping,
                     read_only: Iterable[str] = ()) -> list[str]:
    """What makes a step unsafe in a run of the shadow runner: required resources that are not
    shadow-safe, and IO managers its inputs are read through that may have side effects."""
    allowed = set(read_only)
    bad = set(unsafe_resources(required, resource_defs, read_only))
    bad |= {k for k in input_io_keys
            if k not in allowed and not (k in resource_defs and reads_without_side_effects(resource_defs[k]))}
    return sorted(bad)


def input_io_keys(job_def, node_handle, asset_keys) -> set[str]:
    """IO manager keys the step's inputs from outside the step are loaded through."""
    layer = job_def.asset_layer
    op_def = job_def.get_op(node_handle).definition
    keys = {d.input_manager_key for d in op_def.input_defs if d.input_manager_key}
    own = set(asset_keys)
    for key in asset_keys:
        for parent in layer.get(key).parent_keys:
            if parent in own:
                continue
            input_name = layer.get_node_input_name(node_handle, parent)
            input_def = next((d for d in op_def.input_defs if d.name == input_name), None)
            if input_def is not None and input_def.dagster_type.is_nothing:   # `deps=`: nothing is loaded
                continue
            manager = input_def.input_manager_key if input_def is not None else None
            if input_name and not manager and layer.has(parent):
                keys.add(layer.get(parent).io_manager_key)
    return keys


def unsafe_resources(keys: Iterable[str], resource_defs: Mapping, read_only: Iterable[str] = ()) -> list[str]:
    """The resource keys among `keys` (see `resources_written`) that are not shadow-safe, sorted."""
    allowed = set(read_only)
    return sorted(k for k in set(keys)
                  if k not in allowed and not (k in resource_defs and is_shadow_safe(resource_defs[k])))


def read_only_from_tags(tags: Mapping[str, str]) -> list[str]:
    return [k for k in (tags.get(READ_ONLY_TAG) or "").split(",") if k]


def refusal(keys: list[str]) -> str:
    """The reason a step is not pre-executed, in words."""
    names = ", ".join(repr(k) for k in keys)
    return (f"needs resource(s) {names} that are not shadow-safe (they could write live storage); use a "
            "shadow-aware resource or list read-only ones in with_shadow(read_only_resources=[...])")
