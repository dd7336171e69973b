"""The speculative sensor: predict live workflow instances' next steps and launch shadow runs.

Each tick (`shadow_dagster.dagster.speculative_tick.SpeculativeTick`):
1. settles launched predictions (`rollback.resolve_shadow_runs`: hits, misses, cancel + delete);
2. finds live instances (`live_groups`): runs queued or in progress (not shadow-dagster's own),
   and instances whose last run succeeded less than `chain_gap_s` ago (the next job of a chain may
   follow), grouped by workflow key exactly as the signal cases are;
3. builds each prefix ("job/step" in start order from `get_run_step_stats`), loads the workflow's
   fingerprint, rolls the prediction forward `horizon` steps, plans non-critical asset steps whose
   inputs exist, applies the policy (calibrated by recorded outcomes) and the caps;
4. yields one `RunRequest` per work item on the shadow runner job (`shadow_runner`: the work's
   assets execute on the shadow run's own instance, never in the live catalog), with a
   deterministic run key and the shadow tags; launched prediction ids are kept in the cursor, and
   existing shadow runs are checked by prediction tag, so a repeated tick launches nothing twice.

Only asset steps are eligible; op steps are reported as skipped.
"""

from __future__ import annotations

from collections.abc import Iterable

from dagster import DefaultSensorStatus, RunsFilter, SensorEvaluationContext, sensor

from shadow_dagster.dagster.live_groups import IN_FLIGHT
from shadow_dagster.dagster.shadow_job import shadow_job
from shadow_dagster.dagster.shadow_runner import RUNNER_JOB_NAME, SHADOW_JOB_NAME, shadow_runner_job
from shadow_dagster.dagster.speculative_tick import SensorState, SpeculativeTick
from shadow_dagster.speculation.config import SpeculationConfig
from shadow_dagster.store.layout import ShadowStorage
from shadow_dagster.tags import SHADOW_TAG

SPECULATIVE_SENSOR_NAME = "shadow_speculative_sensor"
REPORT_JOB = "shadow_dagster_report"


def build_speculative_sensor(
    *,
    config: SpeculationConfig | None = None,
    storage: ShadowStorage | None = None,
    name: str = SPECULATIVE_SENSOR_NAME,
    job=None,
    job_name: str = SHADOW_JOB_NAME,
):
    """The speculative sensor, set up by `config` (`SpeculationConfig`: policy, pre-fetch and
    pre-allocation, timing, purge, report, schedules) and reading and writing `storage`
    (`ShadowStorage`: signal store, output index, shadow files, fingerprints; defaults from the
    Dagster home, like `ShadowIOManager`'s). `job` (or `job_name`) is the shadow asset job; its
    shadow runs are runs of `shadow_runner_job`, which the sensor targets (and so registers).

    Pre-fetch and pre-allocation (`shadow_dagster.dagster.prepare`) serve every predicted step
    within the horizon, critical ones included. Shadow runs never reach the live asset catalog
    (`shadow_dagster.dagster.shadow_runner`), so they stay on their run pages until purged. Each
    tick stores, per live instance, the latest decision for every predicted step (probability, ETA,
    pre-executed or not and why).
    """
    config = SpeculationConfig() if config is None else config
    if not isinstance(config, SpeculationConfig):
        raise TypeError(f"config must be a SpeculationConfig, got {type(config).__name__}")
    storage = ShadowStorage() if storage is None else storage
    if not isinstance(storage, ShadowStorage):
        raise TypeError(f"storage must be a ShadowStorage, got {type(storage).__name__}")
    state = SensorState.build(config, storage, job.name if job is not None else job_name)

    @sensor(name=name, minimum_interval_seconds=config.minimum_interval_seconds,
            default_status=DefaultSensorStatus.RUNNING if config.running else DefaultSensorStatus.STOPPED,
            description="shadow-dagster: pre-executes predicted non-critical steps in shadow runs",
            jobs=[shadow_runner_job] + ([job] if job is not None else []))
    def _speculative_sensor(context: SensorEvaluationContext):
        return SpeculativeTick(state, context).evaluate()

    return _speculative_sensor


def speculation_definitions(assets: Iterable, *, config: SpeculationConfig | None = None,
                            storage: ShadowStorage | None = None, report: bool = True,
                            read_only_resources: Iterable[str] = ()):
    """The shadow job, the speculative sensor and the `speculation_report` asset (with
    `REPORT_JOB`, which logs it) for `assets` (the user's assets, already passed through
    `guard_assets`): merge with `Definitions.merge`. `shadow_definitions(user_defs)` calls this for
    you and logs the report from its refit job instead."""
    from dagster import Definitions

    from shadow_dagster.dagster.reported import reporting_job
    from shadow_dagster.dagster.speculation_report import build_speculation_report

    config = SpeculationConfig() if config is None else config
    job = shadow_job(assets, read_only_resources=read_only_resources)
    sensor_def = build_speculative_sensor(job=job, config=config, storage=storage)
    if not report:
        return Definitions(jobs=[job], sensors=[sensor_def])
    reported = build_speculation_report(storage=storage, policy=config.policy, window_days=config.report_window_days)
    return Definitions(assets=[reported.spec], jobs=[job, reporting_job(REPORT_JOB, [reported])],
                       sensors=[sensor_def])


def speculation_pending(instance) -> int:
    """Shadow runs still in flight (for reports and tests)."""
    return sum(1 for r in instance.get_runs(filters=RunsFilter(tags={SHADOW_TAG: "true"})) if r.status in IN_FLIGHT)


__all__ = ["REPORT_JOB", "RUNNER_JOB_NAME", "SHADOW_JOB_NAME", "SPECULATIVE_SENSOR_NAME", "build_speculative_sensor",
           "speculation_definitions", "speculation_pending"]
