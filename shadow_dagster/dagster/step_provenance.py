"""The provenance key a running Dagster step would give one of its assets.

Each input is pinned to the exact materialization(s) read: the storage id of the asset's latest
event, or, for a partitioned input, of the latest materialization of each partition the step reads
(Dagster's own pointer is the asset's latest event in any partition, which other partitions' runs
move all the time). A storage id names one event, so it fixes the input's data version too.

A live step reads the live instance. A shadow run executes its assets on an instance of its own
(`shadow_dagster.dagster.shadow_runner`), so that no shadow event reaches the live catalog; its
steps pin inputs from the live instance it registered here (`live_side`), and an input made earlier
in the same shadow run by the shadow output's provenance key and content hash. A live
materialization that reused a shadow output stands for that output too, so a step downstream keys the same in the live run
as in the shadow run. Shared by the shadow IO manager (shadow writes) and the reuse wrapper (live
lookups) so both compute the same key.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field

from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance

from shadow_dagster.speculation.provenance import ProvenanceUnknown, is_provenance_key, provenance_key
from shadow_dagster.tags import CONTENT_HASH, PROVENANCE_KEY, REUSED_FROM, is_shadow_run

MAX_PINNED_PARTITIONS = 1000  # a step reading more input partitions than this is not keyed


@dataclass
class LiveSide:
    """What a shadow run executing on its own instance keys its inputs against: the live instance,
    and the storage id of each input's latest event before the run read any of them."""

    instance: DagsterInstance
    as_of: dict[AssetKey, int | None] = field(default_factory=dict)


_live_sides: dict[str, LiveSide] = {}
_lock = threading.Lock()


class live_side:
    """Context manager: while open, shadow run `run_id`'s steps key their inputs against `side`."""

    def __init__(self, run_id: str, side: LiveSide):
        self.run_id, self.side = run_id, side

    def __enter__(self):
        with _lock:
            _live_sides[self.run_id] = self.side
        return self.side

    def __exit__(self, *exc):
        with _lock:
            _live_sides.pop(self.run_id, None)


def registered_live_side(run_id: str) -> LiveSide | None:
    with _lock:
        return _live_sides.get(run_id)


@dataclass(frozen=True)
class Latest:
    """An input's latest event: what Dagster's data version cache holds for it."""

    storage_id: int
    event_type: DagsterEventType
    run_id: str


def latest_event(instance: DagsterInstance, key: AssetKey) -> Latest | None:
    """The asset's latest materialization, else its latest observation, as Dagster's data version
    cache finds them for a step's inputs."""
    records = instance.get_asset_records([key])
    entry = records[0].asset_entry if records else None
    record = entry.last_materialization_record if entry is not None else None
    kind = DagsterEventType.ASSET_MATERIALIZATION
    if record is None:
        record = next(iter(instance.fetch_observations(key, limit=1).records), None)
        kind = DagsterEventType.ASSET_OBSERVATION
    return None if record is None else Latest(record.storage_id, kind, record.run_id)


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


def _partition_ids(step_context, instance, parent: AssetKey, as_of: int | None) -> dict[str, int] | None:
    """For an input read by partition: the storage id of the latest materialization of each partition
    the step reads (None for one not materialised yet); None for an unpartitioned input.

    `as_of` is the asset's latest storage id before the step loaded its inputs (Dagster reads it
    when the step starts); a partition re-materialised since may not be what the step read, so the
    key is unknown."""
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
    latest = instance.event_log_storage.get_latest_storage_id_by_partition(
        parent, DagsterEventType.ASSET_MATERIALIZATION, partitions=set(keys))
    if not latest:
        raise ProvenanceUnknown(f"input {pname}: none of the {len(keys)} partitions read has been materialised")
    moved = [k for k in keys if k in latest and (as_of is None or latest[k] > as_of)]
    if moved:
        raise ProvenanceUnknown(f"input {pname} partition {moved[0]!r} was re-materialised after this step started")
    # a partition not materialised yet (the normal state of time partitions) is pinned as absent
    return {k: latest.get(k) for k in keys}


def _materializations(instance, parent: AssetKey, storage_ids: list[int]) -> dict[int, tuple[str, str]]:
    """storage id -> (the run that wrote it, the pin it stands for). A live materialization that
    reused a shadow output stands for that output's provenance key, so a step downstream keys the
    same in the live run as it did in the shadow run beside it."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=parent, storage_ids=storage_ids), limit=len(storage_ids)).records
    out = {}
    for r in records:
        out[r.storage_id] = (r.run_id, _stands_for(r))
    return out


def _value_pin(meta) -> str | None:
    """"key:<provenance key>:<content hash>" for metadata naming a shadow output's exact bytes,
    else None. The hash matters: a key names how a value was made, and two shadow runs of a step
    that is not deterministic make different bytes under one key."""
    key = getattr(meta.get(PROVENANCE_KEY), "value", None)
    digest = getattr(meta.get(CONTENT_HASH), "value", None)
    if is_provenance_key(key) and is_provenance_key(digest):
        return f"key:{key}:{digest}"
    return None


def _stands_for(record) -> str:
    """The pin a materialization stands for: the shadow output it reused when it says so (both
    reuse entries present, a well-formed key and content hash), else its own storage id. A value
    that does not fit counts as no claim: at worst a missed reuse, never a failed step."""
    mat = record.asset_materialization
    meta = mat.metadata if mat is not None else {}
    pin = _value_pin(meta) if REUSED_FROM in meta else None
    return pin or str(record.storage_id)


def _own_shadow_pin(step_context, parent: AssetKey, storage_id: int, partition: str | None) -> str:
    """The pin of an input this shadow run made itself: the provenance key of its shadow output."""
    pname = parent.to_user_string()
    layer = step_context.job_def.asset_layer
    input_name = layer.get_node_input_name(step_context.node_handle, parent)
    if input_name and step_context.has_asset_partitions_for_input(input_name):
        read = set(step_context.asset_partitions_subset_for_input(
            input_name, require_valid_partitions=False).get_partition_keys())
        if read != {partition}:
            raise ProvenanceUnknown(f"input {pname} is read over partitions this shadow run did not make")
    records = step_context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=parent, storage_ids=[storage_id]), limit=1).records
    meta = records[0].asset_materialization.metadata if records and records[0].asset_materialization else {}
    pin = _value_pin(meta)
    if pin is None:
        raise ProvenanceUnknown(f"input {pname} was made by this shadow run without a provenance key")
    return pin


def compute_step_provenance(step_context, asset_key: AssetKey, *, live_inputs_only: bool) -> StepProvenance:
    """Compute the key. With `live_inputs_only`, an input last materialised by a shadow run other than
    this run, or by a run that no longer exists, makes the key unknown (its data may not be in live
    storage). Runless materializations (run id "") count as live."""
    name = asset_key.to_user_string()
    partition = None
    shadow = is_shadow_run(step_context.run_tags)
    side = registered_live_side(step_context.run_id) if shadow else None
    live = side.instance if side is not None else step_context.instance
    try:
        partition = step_partition_key(step_context, asset_key)
        node = step_context.job_def.asset_layer.get(asset_key)
        pins: dict[str, str] = {}
        producers: dict[str, bool | str] = {}
        for parent in sorted(node.parent_keys, key=lambda k: k.to_user_string()):
            pname = parent.to_user_string()
            own = step_context.maybe_fetch_and_get_input_asset_version_info(parent)
            if shadow and own is not None and own.run_id == step_context.run_id \
                    and own.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                pins[pname] = _own_shadow_pin(step_context, parent, own.storage_id, partition)
                continue
            if side is not None:
                info, as_of = latest_event(live, parent), side.as_of.get(parent)
            else:
                info, as_of = own, own.storage_id if own is not None else None
            if info is None:
                raise ProvenanceUnknown(f"input {pname} has never been materialised or observed")
            materialized = info.event_type == DagsterEventType.ASSET_MATERIALIZATION
            by_partition = _partition_ids(step_context, live, parent, as_of) if materialized else None
            if by_partition is None and (as_of is None or info.storage_id > as_of):
                raise ProvenanceUnknown(f"input {pname} was materialised again while this step read it")
            read = by_partition if by_partition is not None else {"": info.storage_id}   # what the step read
            ids = sorted({i for i in read.values() if i is not None})
            written = _materializations(live, parent, ids) if materialized else {}
            gone = [i for i in ids if i not in written] if materialized else []
            if gone:   # e.g. a run deleted meanwhile: its producer cannot be checked
                raise ProvenanceUnknown(f"input {pname} materialization {gone[0]} is no longer in the event log")
            canon = {i: written[i][1] if i in written else str(i) for i in ids}
            canon[None] = "absent"
            if len(read) == 1:
                pins[pname] = canon[next(iter(read.values()))]
            else:
                pins[pname] = hashlib.sha256(json.dumps([[k, canon[i]] for k, i in read.items()]).encode()).hexdigest()
            if live_inputs_only:
                for producer in sorted({written[i][0] if i in written else info.run_id for i in ids}):
                    _check_live_producer(step_context, live, pname, producer, producers)
        key = provenance_key(asset_key=name, partition_key=partition, code_version=node.code_version,
                             input_data_versions=pins, config=step_context.op_config)
        return StepProvenance(key, None, name, partition)
    except ProvenanceUnknown as exc:
        return StepProvenance(None, exc.reason, name, partition)


def _check_live_producer(step_context, instance, pname: str, run_id: str, cache: dict[str, bool | str]) -> None:
    """Raise ProvenanceUnknown unless `run_id` (an input's producer) is this run, runless, or a live run."""
    if not run_id or run_id == step_context.run_id:
        return
    if run_id not in cache:
        run = instance.get_run_by_id(run_id)
        # a producer Dagster no longer has (a shadow run purged after this step read the asset
        # index) is not provably live: refuse rather than trust its storage id
        cache[run_id] = "gone" if run is None else is_shadow_run(run.tags)
    if cache[run_id] == "gone":
        raise ProvenanceUnknown(f"input {pname} was last materialised by run {run_id}, which no longer exists")
    if cache[run_id]:
        raise ProvenanceUnknown(f"input {pname} was last materialised by shadow run {run_id}, not live")
