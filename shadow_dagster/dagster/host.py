"""Facts about the host and the run launcher that decide how much shadow work may start."""

from __future__ import annotations

import os

from dagster import DagsterRunStatus, RunsFilter

from shadow_dagster.tags import PREDICTED_AT_TAG


def host_load_per_core() -> float | None:
    """The 1-minute load average per usable CPU core of this host (None where there is none)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return load / max(1, cores)


REMOTE_LAUNCHER_PACKAGES = ("dagster_k8s", "dagster_docker", "dagster_aws", "dagster_celery_k8s",
                            "dagster_celery_docker")


def runs_on_live_host(instance) -> bool:
    """Whether the instance's run launcher starts runs on this host, next to the live runs (the
    default launcher's subprocesses, in-process launchers, unknown launchers), rather than on other
    nodes (the Kubernetes, Docker and ECS launchers). Decides the policy's "auto" launch cap."""
    module = type(instance.run_launcher).__module__
    return not module.startswith(REMOTE_LAUNCHER_PACKAGES)


def launch_samples(instance, shadow_runs, now: float) -> list[float]:
    """Seconds from prediction to start of recent shadow runs (the launcher's real latency). A run
    not started yet counts with the time it has waited so far: its latency is at least that."""
    pending = (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING)
    if not shadow_runs:
        return []
    out = []
    for rec in instance.get_run_records(filters=RunsFilter(run_ids=[r.run_id for r in shadow_runs])):
        try:
            predicted = float(rec.dagster_run.tags.get(PREDICTED_AT_TAG, ""))
        except ValueError:
            continue
        if rec.start_time:
            out.append(rec.start_time - predicted)
        elif rec.dagster_run.status in pending:
            out.append(now - predicted)
    return out


__all__ = ["REMOTE_LAUNCHER_PACKAGES", "host_load_per_core", "launch_samples", "runs_on_live_host"]
