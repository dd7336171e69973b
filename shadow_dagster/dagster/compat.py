"""Every private Dagster name shadow-dagster uses, in one place.

Dagster's public API has no equivalent for these; each is resolved lazily (on first use) so that
importing the glue does not load Dagster's workspace or storage machinery. A test resolves every
name against the installed Dagster, so an upgrade that moves one fails there, not in a user's run.
"""

from __future__ import annotations

import importlib

PRIVATE = {
    # rewrapping an op's compute function for the critical guard
    "DecoratedOpFunction": ("dagster._core.definitions.decorators.op_decorator", "DecoratedOpFunction"),
    # a copy of a @record (Definitions) with some fields replaced
    "replace_record": ("dagster_shared.record", "replace"),
    "StepOutputHandle": ("dagster._core.execution.plan.outputs", "StepOutputHandle"),
    "PickledObjectFilesystemIOManager": ("dagster._core.storage.fs_io_manager", "PickledObjectFilesystemIOManager"),
    "PICKLE_PROTOCOL": ("dagster._utils", "PICKLE_PROTOCOL"),
    "PARTITION_NAME_TAG": ("dagster._core.storage.tags", "PARTITION_NAME_TAG"),
    "JobSubsetSelector": ("dagster._core.definitions.selector", "JobSubsetSelector"),
    "ConsolidatedSqliteEventLogStorage": ("dagster._core.storage.event_log", "ConsolidatedSqliteEventLogStorage"),
    "SqliteEventLogStorage": ("dagster._core.storage.event_log", "SqliteEventLogStorage"),
    "WorkspaceProcessContext": ("dagster._core.workspace.context", "WorkspaceProcessContext"),
    "ModuleTarget": ("dagster._core.workspace.load_target", "ModuleTarget"),
    "PythonFileTarget": ("dagster._core.workspace.load_target", "PythonFileTarget"),
    "AssetKeyPartitionKey": ("dagster._core.definitions.events", "AssetKeyPartitionKey"),
    "LoadingContextForTest": ("dagster._core.loader", "LoadingContextForTest"),
    "CachingInstanceQueryer": ("dagster._utils.caching_instance_queryer", "CachingInstanceQueryer"),
    # the next tick of a schedule's cron string, as Dagster's scheduler computes it
    "get_next_cron_tick": ("dagster._utils.schedules", "get_next_cron_tick"),
    "InstigatorType": ("dagster._core.scheduler.instigation", "InstigatorType"),
    "InstigatorStatus": ("dagster._core.scheduler.instigation", "InstigatorStatus"),
    # loading a code location in process, as `dagster dev -m/-f` does (for the CLI's partitions families)
    "CodePointer": ("dagster._core.code_pointer", "CodePointer"),
    "initialize_repository_def_from_pointer": ("dagster._core.definitions.reconstruct",
                                               "initialize_repository_def_from_pointer"),
    "loadable_targets_from_python_module": ("dagster._core.workspace.autodiscovery",
                                            "loadable_targets_from_python_module"),
    "loadable_targets_from_python_file": ("dagster._core.workspace.autodiscovery",
                                          "loadable_targets_from_python_file"),
    # the ContextVar `with DagsterInstance` sets: an instance entered and never exited (or exited out
    # of order) leaves it holding a disposed instance's storage, and every later Definitions load fails
    "CURRENT_DEFS_STATE_STORAGE": ("dagster._core.storage.defs_state.base", "_current_storage"),
}


def __getattr__(name: str):
    try:
        module, attr = PRIVATE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


__all__ = list(PRIVATE)
