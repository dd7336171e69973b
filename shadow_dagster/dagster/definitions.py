"""`shadow_definitions(...)`: everything shadow-dagster adds to a code location, in one call."""

from __future__ import annotations

import math

from dagster import DefaultScheduleStatus, Definitions, RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from shadow_dagster.dagster.history_assets import build_history_assets, signals_spec
from shadow_dagster.dagster.reported import reporting_job
from shadow_dagster.dagster.resources import SignalStoreResource
from shadow_dagster.dagster.sensors import build_signal_sensor
from shadow_dagster.speculation.config import SpeculationConfig
from shadow_dagster.store.layout import ShadowStorage

STORE_RESOURCE_KEY = "shadow_signal_store"
REFIT_JOB = "shadow_dagster_refit"


def _positive_finite(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive, finite number of days, got {value!r}")


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def storage_of(user_defs: Definitions | None, storage: ShadowStorage | None = None,
               store_url: str | None = None) -> ShadowStorage:
    """The one storage of a code location: `storage`, `store_url` (the signal store's URL), and the
    locations a ShadowIOManager among the user's resources sets, merged; a location two of them
    set differently raises ValueError naming both, so that each is configured once."""
    import sys

    if storage is not None and not isinstance(storage, ShadowStorage):
        raise TypeError(f"storage must be a ShadowStorage, got {type(storage).__name__}")
    out = storage or ShadowStorage()
    if store_url:
        out = out.merged(ShadowStorage(signal_store_url=store_url), source="store_url")
    io_manager = sys.modules.get("shadow_dagster.dagster.io_manager")   # not imported: no ShadowIOManager in use
    resources = (user_defs.resources or {}) if user_defs is not None and io_manager is not None else {}
    for key, res in sorted(resources.items()):
        if isinstance(res, io_manager.ShadowIOManager):
            out = out.merged(res.storage(), source=f"ShadowIOManager {key!r}")
    return out


def build_refit_schedule(job, store: SignalStoreResource, *, cron: str, min_new_runs: int):
    """Adaptive refit: on each cron tick, refit only when enough runs finished since the last refit."""

    @schedule(
        name="shadow_dagster_refit_schedule",
        cron_schedule=cron,
        job=job,
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Refits graphs, patterns and fingerprints once {min_new_runs} new run(s) finished",
    )
    def _refit(context: ScheduleEvaluationContext):
        from dagster import DagsterRunStatus, RunsFilter

        # RunRecord (not DagsterRun) carries the timestamps. Count from when the last successful
        # refit was created: a run that ended after that may have been missed by its fit, and a
        # refit on unchanged history is a no-op, so erring early costs nothing.
        last = context.instance.get_run_records(
            filters=RunsFilter(job_name=job.name, statuses=[DagsterRunStatus.SUCCESS]), limit=1
        )
        since_ms = int(last[0].create_timestamp.timestamp() * 1000) if last else None
        new = store.get_store().count_finished_runs(since_ms=since_ms, exclude_jobs=[job.name])
        if new < min_new_runs:
            return SkipReason(f"history unchanged enough: {new} run(s) finished since the last refit")
        return RunRequest(run_key=None, tags={"shadow_dagster/refit_new_runs": str(new)})

    return _refit


def shadow_definitions(
    user_defs: Definitions | None = None,
    *,
    store_url: str | None = None,
    storage: ShadowStorage | None = None,
    resolution_ms: int = 1000,
    retention_days: float = 30.0,
    window_days: float = 30.0,
    page_size: int = 2000,
    sensor_interval_seconds: int = 15,
    refit_cron: str = "*/10 * * * *",
    refit_min_new_runs: int = 1,
    speculation: SpeculationConfig | dict | None = None,
    read_only_resources: list[str] | tuple[str, ...] = (),
) -> Definitions:
    """Definitions to merge into yours: `Definitions.merge(my_defs, shadow_definitions(my_defs))`.

    `user_defs` lets the history assets read your job definitions for data edges, and turns on
    speculation: when it has assets tagged `shadow_dagster/critical: "false"`, a shadow asset job
    over them and the speculative sensor are added (`speculation`: a `SpeculationConfig`, or a dict
    of its fields such as `{"policy": PolicyConfig(...), "ttl_s": 1800}`), with the
    `speculation_report` asset. `storage` (`ShadowStorage`) says where every piece of state lives;
    `store_url` is a shortcut for its signal store, and a `ShadowIOManager` among your resources
    contributes its shadow_dir, store_url and prefetch_dir (see `storage_of`). A non-critical step is pre-executed only if every resource it writes
    through is shadow-safe (see shadow_dagster.dagster.shadow_env); `read_only_resources` names the
    resource keys you declare write nothing. Invalid values (resolution outside 1 ms..60 s, a malformed URL, a
    non-positive window) raise here, at load time.
    """
    _positive_finite("window_days", window_days)
    _positive_finite("retention_days", retention_days)
    _positive_int("sensor_interval_seconds", sensor_interval_seconds)
    _positive_int("refit_min_new_runs", refit_min_new_runs)
    if isinstance(read_only_resources, str) or not all(isinstance(k, str) for k in read_only_resources):
        raise TypeError(f"read_only_resources must be a list of resource keys, got {read_only_resources!r}")
    config = SpeculationConfig.from_options(speculation, report_window_days=window_days)
    storage = storage_of(user_defs, storage, store_url)
    store = SignalStoreResource(
        url=storage.signal_store_url, resolution_ms=resolution_ms, retention_days=retention_days, page_size=page_size
    )
    if retention_days < window_days:
        raise ValueError(
            f"retention_days ({retention_days}) is shorter than window_days ({window_days}): the "
            "fingerprint window would read signals that retention already deleted"
        )

    def user_jobs() -> list:
        return list(user_defs.get_repository_def().get_all_jobs()) if user_defs is not None else []

    history = build_history_assets(window_days=window_days, jobs=user_jobs, storage=storage)
    jobs, sensors = [], [build_signal_sensor(minimum_interval_seconds=sensor_interval_seconds)]
    speculative = _speculation(user_defs, storage, config, read_only_resources)
    if speculative is not None:
        shadow, sensor, report = speculative
        jobs.append(shadow)
        sensors.append(sensor)
        history.append(report)
    refit_job = reporting_job(REFIT_JOB, history,
                              description="Refit shadow-dagster's graphs, patterns and fingerprints")
    return Definitions(
        assets=[signals_spec, *(r.spec for r in history)],
        jobs=[refit_job, *jobs],
        schedules=[build_refit_schedule(refit_job, store, cron=refit_cron, min_new_runs=refit_min_new_runs)],
        sensors=sensors,
        resources={STORE_RESOURCE_KEY: store},
    )


def _speculation(user_defs: Definitions | None, storage: ShadowStorage, config: SpeculationConfig,
                 read_only_resources=()):
    """(shadow job, speculative sensor, reported report) when the user has non-critical assets."""
    from shadow_dagster.dagster.speculation_report import build_speculation_report
    from shadow_dagster.dagster.shadow_job import non_critical_keys
    from shadow_dagster.dagster.speculative_sensor import speculation_definitions

    assets = list(user_defs.assets or []) if user_defs is not None else []
    if not non_critical_keys(assets):
        return None
    spec = speculation_definitions(assets, config=config, storage=storage, report=False,
                                   read_only_resources=read_only_resources)
    (job,), (sensor,) = spec.jobs, spec.sensors
    report = build_speculation_report(storage=storage, policy=config.policy, window_days=config.report_window_days)
    return job, sensor, report


def with_shadow(user_defs: Definitions, **options) -> Definitions:
    """`user_defs` with shadow-dagster merged in: the one call a code location needs.

    Works on any `Definitions` (hand-written, `load_defs`/`dg` autoloaded, built from
    `load_assets_from_modules`): every executable asset is wrapped by the critical guard, every
    other field (jobs, schedules, sensors, asset checks, resources, executor, loggers, metadata,
    component tree) is kept as it is, and no step is added to the user's jobs. `options` are
    `shadow_definitions`'s keywords.
    """
    from shadow_dagster.dagster.compat import replace_record
    from shadow_dagster.dagster.critical import guard_assets

    if not isinstance(user_defs, Definitions):
        raise TypeError(f"with_shadow takes your Definitions, got {type(user_defs).__name__}")
    guarded = replace_record(user_defs, assets=guard_assets(user_defs.assets or []))
    return Definitions.merge(guarded, shadow_definitions(guarded, **options))
