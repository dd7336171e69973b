"""Submit a run of an asset selection the way Dagster's daemon does: through a code location and the
instance's run coordinator and launcher (so the run can be cancelled by the launcher later)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dagster import AssetKey


def submit_shadow_request(instance, workspace, location_name: str, request):
    """Submit a shadow RunRequest of the speculative sensor (a run of the shadow runner job)."""
    return submit_asset_run(instance, workspace, location_name, request.job_name, None, request.tags,
                            request.run_config)


def submit_asset_run(instance, workspace, location_name: str, job_name: str, asset_keys: Iterable[AssetKey] | None,
                     tags: Mapping[str, str], run_config: Mapping | None = None):
    """Create a run of `job_name` (restricted to `asset_keys` unless None: the whole job, e.g. the
    shadow runner) in the code location `location_name` of `workspace` (a request context), submit
    it, and return the DagsterRun."""
    from shadow_dagster.dagster.compat import JobSubsetSelector

    keys = None if asset_keys is None else [k if isinstance(k, AssetKey) else AssetKey.from_user_string(k)
                                            for k in asset_keys]
    if keys is not None and not keys:
        raise ValueError("submit_asset_run needs at least one asset key (or None for the whole job)")
    location = workspace.get_code_location(location_name)
    repo = next(iter(location.get_repositories().values()))
    remote_job = location.get_job(JobSubsetSelector(
        location_name=location_name, repository_name=repo.name, job_name=job_name, op_selection=None,
        asset_selection=keys))
    config = dict(run_config or {})
    plan = location.get_execution_plan(remote_job, config, step_keys_to_execute=None, known_state=None,
                                       instance=instance)
    run = instance.create_run(
        job_name=job_name, run_id=None, run_config=config, resolved_op_selection=None,
        step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute, op_selection=None,
        status=None, root_run_id=None, parent_run_id=None, tags=dict(tags), job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot, parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(), job_code_origin=remote_job.get_python_origin(),
        asset_selection=frozenset(keys) if keys is not None else None, asset_check_selection=None, asset_graph=repo.asset_graph)
    return instance.submit_run(run.run_id, workspace)
