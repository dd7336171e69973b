"""Data dependencies and per-step info of a Dagster job, keyed by step key (input to the graph core).

Step keys are what step events carry: the op handle, dotted for ops inside graph-backed ops
(``outer.inner``), the op name for asset steps (``my_asset``, or ``prefix__my_asset`` for an asset
with a key prefix). Steps downstream of dynamic outputs run as ``step[mapping_key]``; they are
reported here under their plain handle.
"""

from __future__ import annotations

import json
from collections import defaultdict

from dagster import AssetKey, JobDefinition

from shadow_dagster.dagster.shadow_env import input_io_keys, resources_written
from shadow_dagster.tags import CRITICAL_TAG, is_critical

CONCURRENCY_TAG = "dagster/concurrency_key"
K8S_CONFIG_TAG = "dagster-k8s/config"


def definition_graph(job_def: JobDefinition, prefix: str = "") -> tuple[list[tuple[str, str]], dict[str, dict]]:
    """``(data_edges, node_info)`` of ``job_def``, ready for ``build_workflow_graph``.

    ``data_edges`` lists (upstream step key, downstream step key) once per pair, sorted.
    ``node_info[step_key]`` holds: ``job``, ``op`` (op definition name), ``required_resources``
    (sorted), ``pool``, ``concurrency_key``, ``cpu``/``memory`` (from the ``dagster-k8s/config`` op
    tag when present), ``tags`` (op tags), ``critical``, ``asset_keys`` and ``outputs`` (output
    name -> downstream step keys) with ``optional_outputs``. ``prefix`` is prepended to every step
    key, for workflows whose jobs share op names (label events the same way).
    """
    if not isinstance(job_def, JobDefinition):
        raise TypeError(f"definition_graph needs a dagster JobDefinition, got {type(job_def).__name__}"
                        " (resolve asset jobs first, e.g. Definitions.resolve_job_def(name))")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
    graph_def = job_def.graph
    outputs: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    edges = set()
    for out_handle, in_handle in graph_def.get_op_input_output_handle_pairs(None):
        source, target = prefix + str(out_handle.node_handle), prefix + str(in_handle.node_handle)
        edges.add((source, target))
        outputs[source][out_handle.output_name].add(target)

    node_info = {}
    for handle in graph_def.get_op_handles(None):
        node = job_def.get_op(handle)
        op_def = node.definition
        key = prefix + str(handle)
        tags = {str(k): str(v) for k, v in node.tags.items()}
        asset_keys, asset_tags = _assets(job_def, handle)
        info = {
            "job": job_def.name,
            "op": op_def.name,
            "required_resources": sorted(op_def.required_resource_keys),
            "written_resources": sorted(resources_written(op_def)),
            "input_io_managers": sorted(input_io_keys(job_def, handle, [AssetKey.from_user_string(k)
                                                                         for k in asset_keys])),
            "pool": op_def.pool,
            "concurrency_key": tags.get(CONCURRENCY_TAG),
            "tags": tags,
            "critical": _critical(tags, asset_tags),
            "asset_keys": asset_keys,
            "outputs": {o.name: sorted(outputs[key].get(o.name, ())) for o in op_def.output_defs},
            "optional_outputs": sorted(o.name for o in op_def.output_defs if not o.is_required),
        }
        info.update(_k8s_requests(tags.get(K8S_CONFIG_TAG), key))
        node_info[key] = {k: v for k, v in info.items() if v is not None}
    return sorted(edges), dict(sorted(node_info.items()))


def _assets(job_def: JobDefinition, handle) -> tuple[list[str], list[dict]]:
    layer = job_def.asset_layer
    assets_def = layer.get_assets_def_for_node(handle)
    if assets_def is None:
        return [], []
    keys = sorted(layer.get_selected_entity_keys_for_node(handle), key=lambda k: k.to_user_string())
    specs = assets_def.specs_by_key
    return ([k.to_user_string() for k in keys],
            [dict(specs[k].tags or {}) for k in keys if k in specs])


def _critical(op_tags: dict, asset_tags: list[dict]) -> bool:
    """Critical unless the op says "false", or every asset it materializes says "false"."""
    if not is_critical(op_tags):
        return False
    if asset_tags and all(CRITICAL_TAG in t and not is_critical(t) for t in asset_tags):
        return False
    return True


def _k8s_requests(raw: str | None, key: str) -> dict:
    """cpu/memory requests (else limits) from a ``dagster-k8s/config`` tag value."""
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"step {key!r}: tag {K8S_CONFIG_TAG} is not valid JSON: {exc}") from exc
    resources = ((config or {}).get("container_config") or {}).get("resources") or {}
    found = {}
    for kind in ("limits", "requests"):          # requests win over limits
        for name in ("cpu", "memory"):
            value = (resources.get(kind) or {}).get(name)
            if value is not None:
                found[name] = str(value)
    return found
