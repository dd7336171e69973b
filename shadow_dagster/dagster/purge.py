"""Purge a finished shadow run from Dagster so the asset catalog reflects live runs only.

A shadow run records real asset events (ASSET_MATERIALIZATION_PLANNED, ASSET_MATERIALIZATION,
ASSET_FAILED_TO_MATERIALIZE when cancelled). `DagsterInstance.delete_run` removes the run and its
`event_logs` / `asset_event_tags` rows, but not what Dagster caches per asset key in the
`asset_keys` table (checked on dagster 1.13, SQLite consolidated and PostgreSQL storage):

- `last_materialization` (the serialised EventLogRecord of the latest materialization) and
  `last_run_id` keep pointing at the deleted run. `get_latest_materialization_event`,
  `get_asset_records`, the stale-status resolver, declarative automation (CachingInstanceQueryer)
  and the data-version cache of a running step (`input_event_pointer` of downstream
  materializations) all read these columns;
- `cached_status_data` (the partition status cache) still lists partitions only the deleted run
  materialised; its incremental refresh never notices deletions.

`purge_shadow_run` therefore deletes the events, rewrites those two columns from what is left in
the event log (the same values Dagster itself would have written had the shadow run never
happened), wipes the partition status cache of the touched keys (Dagster rebuilds it on the next
read), drops the run's asset-check execution rows and captured logs, and finally deletes the run
record. Each step is idempotent and ordered so that a crash half-way is repaired by the next call
(the run record, which names the run's assets, goes last).

Only runs tagged `shadow_dagster/shadow=true` *in the instance's own run record* are purged (a
non-shadow run raises), and only once they are finished (SUCCESS, FAILURE or CANCELED).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from dagster import AssetKey, DagsterInstance

from shadow_dagster.tags import SHADOW_TAG, is_shadow_run


class NotAShadowRun(ValueError):
    """Raised when asked to purge a run that is not a shadow run."""


@dataclass
class PurgeResult:
    run_id: str
    purged: bool                      # the run is gone from the instance after this call
    reason: str = ""
    asset_keys: list[str] = field(default_factory=list)   # keys whose events were removed
    restored: dict[str, str | None] = field(default_factory=dict)  # key -> run id now latest (None: none)


def _sql_storage(instance: DagsterInstance):
    from shadow_dagster.dagster.compat import SqlEventLogStorage

    storage = instance.event_log_storage
    return storage if isinstance(storage, SqlEventLogStorage) else None


def _run_asset_keys(instance: DagsterInstance, run) -> set[AssetKey]:
    """Every asset key the run has events for, plus the ones it was launched for (still known after
    a crash that removed its events but not its record)."""
    keys = set(instance.event_log_storage.get_asset_keys_for_run(run.run_id))
    keys |= set(run.asset_selection or ())
    from shadow_dagster.dagster.rollback import TARGETS_TAG

    try:
        keys |= {AssetKey.from_user_string(k) for k in json.loads(run.tags.get(TARGETS_TAG, "[]"))}
    except (TypeError, ValueError):
        pass
    return keys


def restore_asset_index(instance: DagsterInstance, asset_keys, run_id: str) -> dict[str, str | None]:
    """Rewrite the cached `last_materialization` / `last_run_id` of `asset_keys` that still name
    `run_id` (whose events are already deleted) from the event log; returns key -> run id of the
    materialization now cached (None when no materialization is left).

    Compare-and-set: a row a live event rewrote meanwhile is left alone (it is newer and right)."""
    import sqlalchemy as sa
    from dagster import EventLogRecord, deserialize_value, serialize_value

    from shadow_dagster.dagster.compat import AssetKeyTable

    storage = _sql_storage(instance)
    if storage is None:
        raise TypeError(f"cannot repair the asset index of {type(instance.event_log_storage).__name__}: "
                        "shadow-dagster needs a SQL event log storage (SQLite, PostgreSQL, MySQL)")
    restored: dict[str, str | None] = {}
    for key in sorted(asset_keys, key=lambda k: k.to_user_string()):
        with storage.index_connection() as conn:
            row = conn.execute(sa.select(AssetKeyTable.c.last_materialization, AssetKeyTable.c.last_run_id)
                               .where(AssetKeyTable.c.asset_key == key.to_string())).first()
        if row is None:
            continue
        cached_text, cached_run = row[0], row[1]
        cached = deserialize_value(cached_text) if cached_text else None
        cached_mat_run = cached.run_id if isinstance(cached, EventLogRecord) else None
        if cached_mat_run != run_id and cached_run != run_id:
            continue
        latest = next(iter(instance.fetch_materializations(key, limit=1).records), None)
        planned = storage.get_latest_planned_materialization_info(key)
        values: dict = {}
        if cached_mat_run == run_id:
            values["last_materialization"] = (serialize_value(EventLogRecord(storage_id=latest.storage_id,
                                                                             event_log_entry=latest.event_log_entry))
                                              if latest is not None else None)
        # last_run_id: the run of the newest planned or materialization event left, as Dagster sets it
        newest = max([(r.storage_id, r.run_id) for r in (latest, planned) if r is not None], default=None)
        values["last_run_id"] = newest[1] if newest else None
        cond = [AssetKeyTable.c.asset_key == key.to_string(),
                AssetKeyTable.c.last_materialization == cached_text if cached_text is not None
                else AssetKeyTable.c.last_materialization.is_(None),
                AssetKeyTable.c.last_run_id == cached_run if cached_run is not None
                else AssetKeyTable.c.last_run_id.is_(None)]
        with storage.index_connection() as conn:
            conn.execute(AssetKeyTable.update().where(sa.and_(*cond)).values(**values))
        restored[key.to_user_string()] = latest.run_id if latest is not None else None
    # (last_materialization_timestamp is Dagster's "the asset exists" marker, not a pointer: left as is,
    # like DagsterInstance.delete_run leaves deleted runs' assets in the catalog until wiped)
    return restored


def _delete_check_executions(instance: DagsterInstance, run_id: str) -> None:
    from shadow_dagster.dagster.compat import AssetCheckExecutionsTable

    storage = _sql_storage(instance)
    if storage is None or not storage.has_table("asset_check_executions"):
        return
    with storage.index_connection() as conn:
        conn.execute(AssetCheckExecutionsTable.delete().where(AssetCheckExecutionsTable.c.run_id == run_id))


def purge_shadow_run(instance: DagsterInstance, run_or_id) -> PurgeResult:
    """Remove a finished shadow run and every trace of it from Dagster's asset catalog.

    Raises NotAShadowRun for a run whose stored record is not tagged as a shadow run. A run still in
    flight is left alone (`purged=False`); a run already gone counts as purged (idempotent).
    """
    run_id = run_or_id if isinstance(run_or_id, str) else run_or_id.run_id
    if not isinstance(run_or_id, str) and not is_shadow_run(run_or_id.tags):
        raise NotAShadowRun(f"refusing to purge run {run_id}: it is not a shadow run")
    run = instance.get_run_by_id(run_id)       # trust the instance's record, not the caller's object
    if run is None:
        return PurgeResult(run_id, True, "already purged")
    if run.tags.get(SHADOW_TAG) != "true":
        raise NotAShadowRun(f"refusing to purge run {run_id}: it is not a shadow run")
    if not run.is_finished:
        return PurgeResult(run_id, False, f"still {run.status.value.lower()}")
    keys = _run_asset_keys(instance, run)
    instance.event_log_storage.delete_events(run_id)
    restored = restore_asset_index(instance, keys, run_id)
    if keys:
        instance.wipe_asset_cached_status(sorted(keys, key=lambda k: k.to_user_string()))
    _delete_check_executions(instance, run_id)
    try:
        instance.compute_log_manager.delete_logs(prefix=[run_id])
    except Exception:  # noqa: BLE001 - captured logs are best effort (some managers cannot delete)
        pass
    instance.delete_run(run_id)
    return PurgeResult(run_id, True, "purged", sorted(k.to_user_string() for k in keys), restored)
