"""Run every reliability trial on a throw-away Dagster instance and add the figures up."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from shadow_dagster_bench.home import pg_test_url


@contextlib.contextmanager
def scratch_instance() -> Iterator[tuple]:
    """(instance, DAGSTER_HOME, workdir) in a temporary directory, DAGSTER_HOME set meanwhile."""
    from dagster import DagsterInstance

    from shadow_dagster_bench.reliability.workload import consolidated_home

    old = os.environ.get("DAGSTER_HOME")
    with tempfile.TemporaryDirectory(prefix="shadow-reliability-") as tmp:
        home = consolidated_home(Path(tmp) / "home")
        os.environ["DAGSTER_HOME"] = str(home)
        instance = DagsterInstance.get()
        try:
            yield instance, str(home), Path(tmp)
        finally:
            instance.dispose()
            if old is None:
                os.environ.pop("DAGSTER_HOME", None)
            else:
                os.environ["DAGSTER_HOME"] = old


def plan(trials: int) -> dict:
    """How many trials of each kind `--trials N` means."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    return {"fault_trials_per_backend": trials, "pure_stale_trials": max(1000, 10 * trials),
            "real_stale_trials": max(8, trials // 2), "isolation_rounds": max(1, trials // 50),
            "spoofing_rounds": max(1, trials // 50), "workload_runs": 4 if trials < 50 else 6}


def run_all(trials: int = 100, *, seed: int = 0, pg_url: str | None = None, postgres: bool = True,
            pg_restart: bool = True, echo: Callable[[str], None] = print) -> dict:
    """Every trial; returns the summary (the CLI's JSON) with per-section details."""
    from shadow_dagster_bench.reliability import ingest_faults, isolation, spoofing, stale_pure, stale_real
    from shadow_dagster_bench.reliability.stores import pg_reachable
    from shadow_dagster_bench.reliability.workload import build_event_log

    counts = plan(trials)
    pg_url = pg_url or pg_test_url()
    started = time.monotonic()
    sections: dict = {"plan": counts}
    pg_problem = pg_reachable(pg_url) if postgres else "PostgreSQL trials turned off"
    with scratch_instance() as (instance, home, workdir):
        events = build_event_log(instance, counts["workload_runs"])
        echo(f"event log: {events} records from {counts['workload_runs']} real runs")
        faults = []
        for backend in ("sqlite", "postgres"):
            if backend == "postgres" and pg_problem:
                sections["postgres_skipped"] = pg_problem
                echo(f"postgres fault trials skipped: {pg_problem}")
                continue
            echo(f"ingestion fault trials on {backend} ...")
            r = ingest_faults.fault_trials(instance, home, workdir, backend=backend, pg_url=pg_url, seed=seed,
                                           trials=counts["fault_trials_per_backend"], echo=echo)
            sections[f"ingest_{backend}"] = r
            faults.append(r)
        if pg_restart and not pg_problem:
            from shadow_dagster_bench.reliability.pg_restart import restart_trial

            echo("restarting PostgreSQL in the middle of an ingestion tick ...")
            sections["pg_restart"] = restart_trial(instance, pg_url)
        echo("stale-reuse trials on the provenance key ...")
        sections["stale_pure"] = stale_pure.pure_trials(counts["pure_stale_trials"], seed=seed)
        echo("stale-reuse trials in real runs ...")
        sections["stale_real"] = stale_real.real_trials(instance, counts["real_stale_trials"], seed=seed, echo=echo)
        echo("isolation scenarios ...")
        sections["isolation"] = isolation.isolation_trials(
            instance, len(isolation.scenarios()) * counts["isolation_rounds"])
        echo("spoofing scenarios ...")
        sections["spoofing"] = spoofing.spoofing_trials(instance, len(spoofing.SCENARIOS) * counts["spoofing_rounds"])
    restart = sections.get("pg_restart", {})
    iso, spoof = sections["isolation"], sections["spoofing"]
    stale = [sections["stale_pure"], sections["stale_real"]]
    summary = {
        "trials": sum(r["trials"] for r in faults) + (1 if restart else 0) + sum(s["trials"] for s in stale)
        + iso["trials"] + spoof["trials"],
        "duplicates": sum(r["duplicates"] for r in faults) + restart.get("duplicates", 0),
        "losses": sum(r["losses"] for r in faults) + restart.get("losses", 0),
        "mismatched_rows": sum(r["mismatched"] for r in faults) + restart.get("mismatched", 0),
        "stale_reuses": sum(s["stale_reuses"] for s in stale),
        "correct_reuses": sum(s["correct_reuses"] for s in stale),
        "wrong_live_values": sections["stale_real"]["wrong_values"],
        "live_writes": iso["live_writes"],
        "torn_promotions": iso["torn_promotions"],
        "critical_in_shadow": iso["critical_in_shadow"],
        "spoofed_reuses": spoof["spoofed_reuses"],
        "pg_restart_tick_error": restart.get("first_tick_error_type"),
        "pg_restart_next_tick_ok": restart.get("second_tick_ok"),
        "postgres": "skipped" if pg_problem else "ran",
        "seed": seed,
        "seconds": round(time.monotonic() - started, 1),
    }
    return {**summary, "sections": sections}
