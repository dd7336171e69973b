"""Delete a finished shadow run from Dagster once the user's retention period is over.

A shadow run is a run of the runner job (`shadow_dagster.dagster.shadow_runner`): its assets
executed on its own ephemeral instance, so the live instance holds only its run record, step events
and logs, never an asset event. Deleting it is `DagsterInstance.delete_run` (and its captured logs):
no asset index to repair, no Dagster table written by hand. A shadow-tagged run that does have asset
events in the live instance was not made by shadow-dagster's runner (for example the shadow asset
job launched by hand); it is left alone, because deleting it would leave Dagster's asset index
pointing at a deleted run.

Only runs tagged `shadow_dagster/shadow=true` *in the instance's own run record* are deleted (a
non-shadow run raises), and only once they are finished (SUCCESS, FAILURE or CANCELED).
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import DagsterEventType, DagsterInstance

from shadow_dagster.tags import SHADOW_TAG, is_shadow_run
from shadow_dagster.errors import ShadowDagsterError


class NotAShadowRun(ShadowDagsterError, ValueError):
    """Raised when asked to purge a run that is not a shadow run."""


@dataclass
class PurgeResult:
    run_id: str
    purged: bool                      # the run is gone from the instance after this call
    reason: str = ""
    asset_keys: tuple[str, ...] = ()  # a run left alone: the assets it has events for in the live instance


_ASSET_EVENTS = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION,
                 DagsterEventType.ASSET_MATERIALIZATION_PLANNED, DagsterEventType.ASSET_FAILED_TO_MATERIALIZE}


def asset_keys_of_run(instance: DagsterInstance, run_id: str) -> set:
    """Asset keys with an event of run `run_id` in the instance (planned, failed, materialised,
    observed), through the public per-run records API (Dagster 1.12 and 1.13)."""
    records = instance.get_records_for_run(run_id, of_type=_ASSET_EVENTS).records
    return {r.event_log_entry.dagster_event.asset_key for r in records
            if r.event_log_entry.dagster_event is not None and r.event_log_entry.dagster_event.asset_key}


def purge_shadow_run(instance: DagsterInstance, run_or_id) -> PurgeResult:
    """Delete a finished shadow run (its run record, step events and captured logs).

    Raises NotAShadowRun for a run whose stored record is not tagged as a shadow run. A run still in
    flight is left alone (`purged=False`); a run already gone counts as purged (idempotent).
    """
    run_id = run_or_id if isinstance(run_or_id, str) else run_or_id.run_id
    if not isinstance(run_or_id, str) and not is_shadow_run(run_or_id.tags):
        raise NotAShadowRun(f"refusing to purge run {run_id}: it is not a shadow run")
    run = instance.get_run_by_id(run_id)       # trust the instance's record, not the caller's object
    if run is None:
        return PurgeResult(run_id, True, "already deleted")
    if run.tags.get(SHADOW_TAG) != "true":
        raise NotAShadowRun(f"refusing to purge run {run_id}: it is not a shadow run")
    if not run.is_finished:
        return PurgeResult(run_id, False, f"still {run.status.value.lower()}")
    keys = asset_keys_of_run(instance, run_id)
    if keys:
        return PurgeResult(run_id, False, "it has asset events in the live instance (not a run of the shadow runner); "
                                          "left for Dagster's own tools", tuple(sorted(k.to_user_string() for k in keys)))
    try:
        instance.compute_log_manager.delete_logs(prefix=[run_id])
    except Exception:  # noqa: BLE001 - captured logs are best effort (some managers cannot delete)
        pass
    instance.delete_run(run_id)
    return PurgeResult(run_id, True, "deleted")
