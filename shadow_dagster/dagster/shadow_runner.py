"""Shadow runs that never reach the live catalog.

A shadow run is a run of the op job `__shadow_dagster_runner` on the live instance: it goes through
Dagster's run queue and run tag limits like any run (the assets' pools are not claimed by the inner
run), carries the shadow tags, can be cancelled,
and its logs are on its run page. Its one op executes the predicted assets (a subset of the shadow
asset job) in process on an ephemeral instance of its own, with the same run id and tags, that
shares only the live instance's artifact directory (so IO managers resolve the same live paths to
read). Its materializations, planned and failed events therefore land in that ephemeral instance:
no shadow event is ever an asset's latest materialization in the live instance, at any moment, or
visible to declarative automation and asset sensors, and nothing writes Dagster's tables to hide
them. Inputs are keyed against the live instance (`step_provenance.live_side`), as of before the
run read any of them.
"""

# no `from __future__ import annotations`: Dagster reads the op's config annotation at definition
import contextlib
import contextvars
import json

from dagster import (
    AssetKey,
    Config,
    DagsterInstance,
    Failure,
    OpExecutionContext,
    RunRequest,
    in_process_executor,
    job,
    op,
)

from shadow_dagster.dagster.step_provenance import LiveSide, latest_event, live_side
from shadow_dagster.tags import (
    CRITICAL_TAG,
    PREDICTION_TAG,
    PROVENANCE_KEY,
    SELECTION_TAG,
    SHADOW_PARTITION_TAG,
    SHADOW_TAG,
    is_shadow_run,
)

SHADOW_JOB_NAME = "__shadow_dagster_shadow_job"   # the asset job that holds every pre-executable asset
RUNNER_JOB_NAME = "__shadow_dagster_runner"       # the op job every shadow run is a run of
RUNNER_OP = "execute_predicted_assets"

_in_process_defs: contextvars.ContextVar = contextvars.ContextVar("shadow_dagster_defs", default=None)


class ShadowRunConfig(Config):
    """What one shadow run executes: asset keys (user strings) of the asset job, one partition."""

    assets: list[str]
    partition_key: str | None = None
    asset_job: str = SHADOW_JOB_NAME


def runner_run_config(assets, partition_key: str | None, asset_job: str = SHADOW_JOB_NAME) -> dict:
    return {"ops": {RUNNER_OP: {"config": {"assets": list(assets), "partition_key": partition_key,
                                           "asset_job": asset_job}}}}


def request_assets(request) -> list[str]:
    """The asset keys (user strings) a shadow RunRequest of the speculative sensor executes."""
    return list(request.run_config["ops"][RUNNER_OP]["config"]["assets"])


def runner_tags(assets, partition_key: str | None) -> dict[str, str]:
    """Tags naming what a shadow run executes (never Dagster's partition tag: no live partition run)."""
    tags = {SELECTION_TAG: json.dumps(sorted(assets))}
    if partition_key is not None:
        tags[SHADOW_PARTITION_TAG] = partition_key
    return tags


def shadow_request(assets, partition_key: str | None = None, *, prediction_id: str, tags: dict | None = None,
                   run_key: str | None = None, asset_job: str = SHADOW_JOB_NAME) -> RunRequest:
    """The RunRequest of one shadow run of the runner: it executes `assets` (user strings) of
    `asset_job` for one partition, tagged as shadow work of prediction `prediction_id`."""
    all_tags = {**(tags or {}), SHADOW_TAG: "true", PREDICTION_TAG: prediction_id,
                **runner_tags(assets, partition_key)}
    return RunRequest(run_key=run_key, job_name=RUNNER_JOB_NAME, tags=all_tags,
                      run_config=runner_run_config(list(assets), partition_key, asset_job))


def selection_of(run) -> list[str]:
    """Every asset key a shadow run executes (its tag; the asset selection of a run of the asset job)."""
    try:
        keys = json.loads(run.tags.get(SELECTION_TAG, "null"))
    except ValueError:
        keys = None
    if isinstance(keys, list):
        return sorted(str(k) for k in keys)
    return sorted(k.to_user_string() for k in (run.asset_selection or ()))


def _inner_tags(tags: dict) -> dict[str, str]:
    """The shadow run's tags without Dagster's own (run key, sensor, backfill): the inner run is
    the same shadow run, not another launch."""
    return {k: v for k, v in tags.items() if not k.startswith(("dagster/", ".dagster"))}


def _asset_job(context: OpExecutionContext, name: str):
    try:
        return context.repository_def.get_job(name)
    except Exception:  # noqa: BLE001 - no repository in execute_in_process: the helper below set it
        defs = _in_process_defs.get()
        if defs is None:
            raise Failure(f"the shadow asset job {name!r} is not in this run's repository") from None
        return defs.resolve_job_def(name)


def execute_predicted(asset_job, live: DagsterInstance, run_id: str, tags: dict, assets, partition_key: str | None,
                      log=None):
    """Execute `assets` of `asset_job` for shadow run `run_id` on an ephemeral instance; returns the
    ExecuteInProcessResult. Inputs are keyed against `live` as of now, before any is read."""
    if not is_shadow_run(tags):
        raise Failure("predicted assets execute only in shadow runs (tag shadow_dagster/shadow=true)")
    keys = {AssetKey.from_user_string(a) for a in assets}
    layer = asset_job.asset_layer
    unknown = sorted(k.to_user_string() for k in keys if k not in layer.selected_asset_keys)
    if unknown:
        raise Failure(f"not pre-executable (not in the shadow asset job {asset_job.name}): {', '.join(unknown)}")
    critical = sorted(k.to_user_string() for k in keys if _is_critical(asset_job, k))
    if critical:   # run config can name any job: its assets must still be non-critical
        raise Failure(f"not pre-executable (critical): {', '.join(critical)}")
    parents = {p for k in keys for p in layer.get(k).parent_keys}   # self-dependent assets read themselves
    as_of = {}
    for parent in parents:
        latest = latest_event(live, parent)
        as_of[parent] = latest.storage_id if latest is not None else None
    from shadow_dagster.dagster.step_effects import run_root
    from shadow_dagster.envs.workspace import close_run

    try:
        with DagsterInstance.ephemeral(tempdir=live.root_directory) as inner, \
                live_side(run_id, LiveSide(live, as_of)):
            _copy_dynamic_partitions(asset_job, keys | parents, live, inner)
            result = _inner_job(asset_job, keys).execute_in_process(
                instance=inner, asset_selection=sorted(keys, key=str), partition_key=partition_key, run_id=run_id,
                tags=_inner_tags(tags), raise_on_error=False)
    finally:   # the run's copies of live stores go; its steps' outboxes stay for promotion
        close_run(run_root(live, run_id))
    if log is not None:
        _report(result, log)
    return result


def _is_critical(asset_job, key) -> bool:
    from shadow_dagster.dagster.critical import asset_is_critical

    return asset_is_critical(asset_job.asset_layer.asset_graph.assets_def_for_key(key), key)


def _shadow_resources(asset_job, keys) -> dict:
    """The job's resources for the inner run, with every IO manager the
    predicted assets' outputs go through that is not shadow-aware replaced by a stand-in that keeps
    them in the shadow store and reads inputs through the user's own IO manager."""
    from shadow_dagster.dagster.io_manager import overlay_io_manager
    from shadow_dagster.dagster.shadow_env import is_shadow_safe

    defs = dict(asset_job.resource_defs)
    out = dict(defs)
    for key in sorted({asset_job.asset_layer.get(k).io_manager_key for k in keys}):
        original = defs.get(key)
        if original is not None and not is_shadow_safe(original):
            hidden = f"shadow_dagster_live__{key}"
            out[hidden] = original
            out[key] = overlay_io_manager(original, hidden)
    return out


def _inner_job(asset_job, keys):
    """The shadow asset job rebuilt with `_shadow_resources` (Dagster binds a code location's
    resources into each asset, so overriding the job's alone would not reach them: the assets are
    rebuilt without their bound resources, which the job's resources hold too)."""
    from dagster import AssetsDefinition, AssetSelection, Definitions, define_asset_job

    resources = _shadow_resources(asset_job, keys)
    rebuilt = []
    for assets_def in asset_job.asset_layer.asset_graph.assets_defs:
        attrs = assets_def.get_attributes_dict()
        attrs["resource_defs"] = {}   # every resource is bound once, at the top level, below
        rebuilt.append(AssetsDefinition.dagster_internal_init(**attrs))
    job = define_asset_job(asset_job.name, selection=AssetSelection.assets(*keys), tags=asset_job.tags,
                           executor_def=in_process_executor)
    return Definitions(assets=rebuilt, jobs=[job], resources=resources).resolve_job_def(asset_job.name)


def _dynamic_names(partitions_def) -> set[str]:
    """Names of the dynamic partitions definitions in `partitions_def` (multi-dimensional included)."""
    from dagster import DynamicPartitionsDefinition, MultiPartitionsDefinition

    if isinstance(partitions_def, DynamicPartitionsDefinition) and partitions_def.name:
        return {partitions_def.name}
    if isinstance(partitions_def, MultiPartitionsDefinition):
        return {n for d in partitions_def.partitions_defs for n in _dynamic_names(d.partitions_def)}
    return set()


def _copy_dynamic_partitions(asset_job, keys, live: DagsterInstance, inner: DagsterInstance) -> None:
    """The inner instance knows the live instance's dynamic partitions of the assets involved."""
    layer = asset_job.asset_layer
    names = set()
    for key in keys:
        if layer.has(key):
            names |= _dynamic_names(layer.get(key).partitions_def)
    for name in sorted(names):
        partitions = live.get_dynamic_partitions(name)
        if partitions:
            inner.add_dynamic_partitions(name, partitions)


def _report(result, log) -> None:
    """Log what the inner execution did, on the shadow run's page."""
    for event in result.all_events:
        if event.is_step_materialization:
            mat = event.step_materialization_data.materialization
            key = getattr(mat.metadata.get(PROVENANCE_KEY), "value", None)
            where = f" partition {mat.partition}" if mat.partition else ""
            log.info(f"shadow output of {mat.asset_key.to_user_string()}{where}: "
                     + (f"provenance key {key}" if key else "not reusable (no provenance key)"))
        elif event.is_step_failure:
            log.error(f"shadow step {event.step_key} failed: {event.step_failure_data.error.message.strip()}")


@op(name=RUNNER_OP, out={}, tags={CRITICAL_TAG: "false"},
    description="shadow-dagster: executes predicted non-critical assets on the shadow run's own instance")
def execute_predicted_assets(context: OpExecutionContext, config: ShadowRunConfig):
    asset_job = _asset_job(context, config.asset_job)
    result = execute_predicted(asset_job, context.instance, context.run_id, context.dagster_run.tags,
                               config.assets, config.partition_key, context.log)
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        raise Failure(f"shadow steps failed: {', '.join(failed) or 'the inner run'}")


@job(name=RUNNER_JOB_NAME, executor_def=in_process_executor,
     description="shadow-dagster: every shadow run is a run of this job; its assets never reach the live catalog")
def shadow_runner_job():
    execute_predicted_assets()


@contextlib.contextmanager
def in_process_repository(defs):
    """While open, shadow runs executed with `execute_in_process` (which has no repository) find
    their asset job in `defs`."""
    token = _in_process_defs.set(defs)
    try:
        yield
    finally:
        _in_process_defs.reset(token)


def execute_shadow_request(defs, request, instance: DagsterInstance, **kwargs):
    """Execute a shadow RunRequest of the speculative sensor in process (tests, benchmarks)."""
    if request.job_name not in (None, RUNNER_JOB_NAME):
        raise ValueError(f"not a shadow request: it targets job {request.job_name!r}, not {RUNNER_JOB_NAME}")
    with in_process_repository(defs):
        run_config = {**request.run_config, **kwargs.pop("run_config", {})}   # e.g. quieter loggers
        return shadow_runner_job.execute_in_process(instance=instance, run_config=run_config, tags=request.tags,
                                                    **kwargs)


__all__ = ["RUNNER_JOB_NAME", "SHADOW_JOB_NAME", "ShadowRunConfig", "execute_predicted", "execute_shadow_request",
           "request_assets", "runner_run_config", "runner_tags", "selection_of", "shadow_request", "shadow_runner_job"]
