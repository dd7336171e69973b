"""The provenance key a running Dagster step would give one of its assets.

Input data versions are read from the step's own data version cache, i.e. exactly the values that
Dagster records on the materialization as `dagster/input_data_version/<key>`. Each input is also
pinned to the exact materialization(s) read: the storage id of the asset's latest event, or, for a
partitioned input, of the latest materialization of each partition the step reads (Dagster's own
pointer is the asset's latest event in any partition, which other partitions' runs move all the
time). Shared by the shadow IO manager (shadow writes) and the reuse wrapper (live lookups) so both
compute the same key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from dagster import AssetKey, AssetRecordsFilter, DagsterEventType

from shadow_dagster.speculation.provenance import ProvenanceUnknown, provenance_key
from shadow_dagster.tags import REUSED_FROM, REUSED_STORAGE_ID, is_shadow_run


MAX_PINNED_PARTITIONS = 1000  # a step reading more input partitions than this is not keyed


@dataclass(frozen=True)
class StepProvenance:
    """A provenance key, or the reason it is unknown."""

    key: str | None
    reason: str | None
    asset_key: str
    partition_key: str | None


def step_partition_key(step_context, asset_key: AssetKey) -> str | None:
    """The single partition of `asset_key` this step writes, None if unpartitioned; raises ProvenanceUnknown."""
    output_name = step_context.job_def.asset_layer.get_op_output_name(asset_key)
    if not step_context.has_asset_partitions_for_output(output_name):
        return None
    start, end = step_context.asset_partition_key_range_for_output(output_name)
    if start != end:
        raise ProvenanceUnknown(f"step writes the partition range {start}..{end}; only single partitions are keyed")
    return str(start)


def _partition_ids(step_context, parent: AssetKey, as_of: int) -> dict[str, int] | None:
    """For an input read by partition: the storage id of the latest materialization of each partition
    the step reads; None for an unpartitioned input.

    `as_of` is the asset's latest storage id when the step started, before it loaded its inputs
    (Dagster reads it then); a partition re-materialised since may not be what the step read, so
    the key is unknown."""
    layer = step_context.job_def.asset_layer
    input_name = layer.get_node_input_name(step_context.node_handle, parent)
    if not input_name or not step_context.has_asset_partitions_for_input(input_name):
        return None
    pname = parent.to_user_string()
    keys = sorted(step_context.asset_partitions_subset_for_input(
        input_name, require_valid_partitions=False).get_partition_keys())
    if len(keys) > MAX_PINNED_PARTITIONS:
        raise ProvenanceUnknown(f"input {pname} spans {len(keys)} partitions; at most "
                                f"{MAX_PINNED_PARTITIONS} are keyed")
    latest = step_context.instance.event_log_storage.get_latest_storage_id_by_partition(
        parent, DagsterEventType.ASSET_MATERIALIZATION, partitions=set(keys))
    missing = [k for k in keys if k not in latest]
    if missing:
        raise ProvenanceUnknown(f"input {pname} partition {missing[0]!r} has never been materialised")
    moved = [k for k in keys if latest[k] > as_of]
    if moved:
        raise ProvenanceUnknown(f"input {pname} partition {moved[0]!r} was re-materialised after this step started")
    return {k: latest[k] for k in keys}


def _materializations(step_context, parent: AssetKey, storage_ids: list[int]) -> dict[int, tuple[str, int]]:
    """storage id -> (the run that wrote it, the storage id it stands for). A live materialization
    that reused a shadow output stands for the shadow materialization it took its value from, so a
    step downstream keys the same in the live run as it did in the shadow run beside it."""
    records = step_context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=parent, storage_ids=storage_ids), limit=len(storage_ids)).records
    out = {}
    for r in records:
        out[r.storage_id] = (r.run_id, _stands_for(r))
    return out


def _stands_for(record) -> int:
    """The storage id a materialization stands for: the shadow event it reused when it says so
    (both reuse entries present, an integer id from an earlier event), else its own. A value that
    does not fit counts as no claim: at worst a missed reuse, never a false one."""
    mat = record.asset_materialization
    meta = mat.metadata if mat is not None else {}
    source = meta.get(REUSED_STORAGE_ID)
    value = getattr(source, "value", None)
    if REUSED_FROM not in meta or isinstance(value, bool) or not isinstance(value, int):
        return record.storage_id
    return value if 0 < value < record.storage_id else record.storage_id


def compute_step_provenance(step_context, asset_key: AssetKey, *, live_inputs_only: bool) -> StepProvenance:
    """Compute the key. With `live_inputs_only`, an input last materialised by a shadow run other than
    this run, or by a run that no longer exists, makes the key unknown (its data may not be in live
    storage). Runless materializations (run id "") count as live."""
    name = asset_key.to_user_string()
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
            # pins the exact upstream materialization(s) (storage ids): a re-materialised input
            # never matches, whatever its data version says.
            dv = info.data_version.value if info.data_version is not None else None
            materialized = info.event_type == DagsterEventType.ASSET_MATERIALIZATION
            by_partition = _partition_ids(step_context, parent, info.storage_id) if materialized else None
            read = by_partition if by_partition is not None else {"": info.storage_id}   # what the step read
            ids = sorted(set(read.values()))
            written = _materializations(step_context, parent, ids) if ids else {}
            gone = [i for i in ids if i not in written] if materialized else []
            if gone:   # e.g. a shadow run purged meanwhile: its producer cannot be checked
                raise ProvenanceUnknown(f"input {pname} materialization {gone[0]} is no longer in the event log")
            canon = {i: written[i][1] if i in written else i for i in ids}
            if len(read) == 1:
                pin = str(canon[next(iter(read.values()))])
            else:
                pin = hashlib.sha256(json.dumps([[k, canon[i]] for k, i in read.items()]).encode()).hexdigest()
            versions[pname] = f"{dv}@{pin}" if dv and dv not in ("UNKNOWN", "NULL") else dv
            if live_inputs_only:
                producers = sorted({written[i][0] if i in written else info.run_id for i in ids})
                for producer in producers:
                    _check_live_producer(step_context, pname, producer, shadow_cache)
        key = provenance_key(asset_key=name, partition_key=partition, code_version=node.code_version,
                             input_data_versions=versions, config=step_context.op_config)
        return StepProvenance(key, None, name, partition)
    except ProvenanceUnknown as exc:
        return StepProvenance(None, exc.reason, name, partition)


def _check_live_producer(step_context, pname: str, run_id: str, cache: dict[str, bool | str]) -> None:
    """Raise ProvenanceUnknown unless `run_id` (an input's producer) is this run, runless, or a live run."""
    if not run_id or run_id == step_context.run_id:
        return
    if run_id not in cache:
        run = step_context.instance.get_run_by_id(run_id)
        # a producer Dagster no longer has (a shadow run purged after this step read the asset
        # index) is not provably live: refuse rather than trust its storage id
        cache[run_id] = "gone" if run is None else is_shadow_run(run.tags)
    if cache[run_id] == "gone":
        raise ProvenanceUnknown(f"input {pname} was last materialised by run {run_id}, which no longer exists")
    if cache[run_id]:
        raise ProvenanceUnknown(f"input {pname} was last materialised by shadow run {run_id}, not live")
