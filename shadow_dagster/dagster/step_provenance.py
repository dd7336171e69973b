"""The provenance key a running Dagster step would give one of its assets.

Input identities are read from the step's own data version cache, i.e. exactly the values that
Dagster records on the materialization as `dagster/input_data_version/<key>` and
`dagster/input_event_pointer/<key>` (data version plus the storage id of that materialization). Shared by the shadow
IO manager (shadow writes) and the reuse wrapper (live lookups) so both compute the same key.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import AssetKey

from shadow_dagster.speculation.provenance import ProvenanceUnknown, provenance_key
from shadow_dagster.tags import is_shadow_run


@dataclass(frozen=True)
class StepProvenance:
    """A provenance key, or the reason it is unknown; `input_runs` maps input asset -> producing run."""

    key: str | None
    reason: str | None
    asset_key: str
    partition_key: str | None
    input_runs: dict[str, str]


def step_partition_key(step_context, asset_key: AssetKey) -> str | None:
    """The single partition of `asset_key` this step writes, None if unpartitioned; raises ProvenanceUnknown."""
    output_name = step_context.job_def.asset_layer.get_op_output_name(asset_key)
    if not step_context.has_asset_partitions_for_output(output_name):
        return None
    start, end = step_context.asset_partition_key_range_for_output(output_name)
    if start != end:
        raise ProvenanceUnknown(f"step writes the partition range {start}..{end}; only single partitions are keyed")
    return str(start)


def compute_step_provenance(step_context, asset_key: AssetKey, *, live_inputs_only: bool) -> StepProvenance:
    """Compute the key. With `live_inputs_only`, an input last materialised by a shadow run other than
    this run, or by a run that no longer exists, makes the key unknown (its data may not be in live
    storage). Runless materializations (run id "") count as live."""
    name = asset_key.to_user_string()
    input_runs: dict[str, str] = {}
    partition = None
    try:
        partition = step_partition_key(step_context, asset_key)
        node = step_context.job_def.asset_layer.get(asset_key)
        versions: dict[str, str | None] = {}
        shadow_cache: dict[str, bool | str] = {}
        for parent in sorted(node.parent_keys, key=lambda k: k.to_user_string()):
            pname = parent.to_user_string()
            info = step_context.maybe_fetch_and_get_input_asset_version_info(parent)
            if info is None:
                raise ProvenanceUnknown(f"input {pname} has never been materialised or observed")
            # Dagster's default (logical) data version ignores config and content, so the key also
            # pins the exact upstream materialization (its storage id): a re-materialised input
            # never matches, whatever its data version says.
            dv = info.data_version.value if info.data_version is not None else None
            versions[pname] = f"{dv}@{info.storage_id}" if dv and dv not in ("UNKNOWN", "NULL") else dv
            input_runs[pname] = info.run_id
            if live_inputs_only and info.run_id and info.run_id != step_context.run_id:
                if info.run_id not in shadow_cache:
                    run = step_context.instance.get_run_by_id(info.run_id)
                    # a producer Dagster no longer has (a shadow run purged after this step read the
                    # asset index) is not provably live: refuse rather than trust its storage id
                    shadow_cache[info.run_id] = "gone" if run is None else is_shadow_run(run.tags)
                if shadow_cache[info.run_id] == "gone":
                    raise ProvenanceUnknown(
                        f"input {pname} was last materialised by run {info.run_id}, which no longer exists")
                if shadow_cache[info.run_id]:
                    raise ProvenanceUnknown(
                        f"input {pname} was last materialised by shadow run {info.run_id}, not live")
        key = provenance_key(asset_key=name, partition_key=partition, code_version=node.code_version,
                             input_data_versions=versions, config=step_context.op_config)
        return StepProvenance(key, None, name, partition, input_runs)
    except ProvenanceUnknown as exc:
        return StepProvenance(None, exc.reason, name, partition, input_runs)
