"""The shadow asset job and the catalog of what each workflow step may pre-execute."""

from __future__ import annotations

from collections.abc import Iterable

from dagster import AssetKey, AssetsDefinition, AssetSelection, define_asset_job

from shadow_dagster.dagster.job_graph import definition_graph
from shadow_dagster.dagster.shadow_runner import SHADOW_JOB_NAME
from shadow_dagster.speculation.planner import StepInfo


def non_critical_keys(assets: Iterable) -> list[AssetKey]:
    from shadow_dagster.dagster.critical import asset_is_critical

    return [key for a in assets if isinstance(a, AssetsDefinition)
            for key in a.keys if not asset_is_critical(a, key)]


def shadow_job(assets: Iterable, name: str = SHADOW_JOB_NAME, executor_def=None,
               read_only_resources: Iterable[str] = ()):
    """The asset job shadow runs execute: every non-critical asset among `assets` (subset per run).

    Shadow runs hold a few predicted steps and race the live run to them, so by default their
    steps run in the run worker's process (no per-step process start); pass `executor_def` to
    choose another executor. `read_only_resources` (resource keys the user declares write nothing)
    ride on the job's tags to the critical guard of every shadow run.
    """
    from dagster import in_process_executor

    from shadow_dagster.dagster.shadow_env import READ_ONLY_TAG

    keys = non_critical_keys(list(assets))
    if not keys:
        raise ValueError("no non-critical assets to pre-execute: tag safe assets with "
                         "shadow_dagster/critical='false' (op_tags or tags)")
    return define_asset_job(name, selection=AssetSelection.assets(*keys),
                            executor_def=executor_def or in_process_executor,
                            tags={READ_ONLY_TAG: ",".join(sorted(read_only_resources))},
                            description="shadow-dagster: pre-executes predicted non-critical assets")


def build_catalog(repository_def, shadow_job_name: str = SHADOW_JOB_NAME) -> dict[str, StepInfo]:
    """activity ("job/step") -> StepInfo for every asset step of every job of the repository.

    A step is eligible (critical=False) only if it is non-critical and all its assets are in the
    shadow job, so that the shadow runner can execute them; one that needs a resource that is not
    shadow-safe, or reads an input through an IO manager that may have side effects, carries the
    refusal in words.
    """
    from shadow_dagster.dagster.shadow_env import read_only_from_tags, refusal, unsafe_in_runner

    try:
        shadow = repository_def.get_job(shadow_job_name)
        shadow_keys = {k.to_user_string() for k in shadow.asset_layer.selected_asset_keys}
        read_only = read_only_from_tags(shadow.tags)
    except Exception:  # noqa: BLE001 - no shadow job: nothing is eligible
        shadow_keys, read_only = set(), []
    graph = repository_def.asset_graph
    catalog: dict[str, StepInfo] = {}
    for job in repository_def.get_all_jobs():
        if job.name == shadow_job_name or job.name.startswith("__"):
            continue   # the shadow job and Dagster's implicit asset job are not workflows
        _, nodes = definition_graph(job)
        for step_key, info in nodes.items():
            assets = tuple(info.get("asset_keys") or ())
            if not assets:
                continue
            deps, partitioned = set(), False
            for key in assets:
                node = graph.get(AssetKey.from_user_string(key))
                deps |= {p.to_user_string() for p in node.parent_keys}
                partitioned = partitioned or node.partitions_def is not None
            critical = bool(info.get("critical", True)) or not set(assets) <= shadow_keys
            # shadow runs are runs of the runner, where outputs never reach the user's IO manager
            unsafe = [] if critical else unsafe_in_runner(info.get("required_resources", ()),
                                                          info.get("input_io_managers", ()), job.resource_defs,
                                                          read_only)
            catalog[f"{job.name}/{step_key}"] = StepInfo(assets, critical, tuple(sorted(deps - set(assets))),
                                                         None, partitioned, refusal(unsafe) if unsafe else None)
    return catalog


__all__ = ["build_catalog", "non_critical_keys", "shadow_job"]
