"""Restart PostgreSQL in the middle of an ingestion tick: the tick fails clearly, the next one
succeeds, nothing is lost or duplicated.

The restart happens inside the tick, after a page's rows are inserted and before its cursor
commit (the `_after_rows` hook), so the transaction in flight is cut by the server going down.
Other sessions on the server are cut too: run this alone.
"""

from __future__ import annotations

import shutil
import subprocess
import time

from sqlalchemy.engine import make_url

from shadow_dagster_bench.reliability.ingest_faults import compare, expected_rows
from shadow_dagster_bench.reliability.stores import pg_reachable, pg_schema


def find_cluster(port: int) -> tuple[str, str]:
    """(version, name) of the local cluster listening on `port`, from pg_lsclusters."""
    if not shutil.which("pg_lsclusters"):
        raise RuntimeError("pg_lsclusters not found: restarting PostgreSQL needs Debian's postgresql-common")
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == str(port):
            return parts[0], parts[1]
    raise RuntimeError(f"no local PostgreSQL cluster listens on port {port}:\n{out}")


def restart_cluster(version: str, name: str) -> None:
    """`pg_ctlcluster VERSION NAME restart`, bypassing systemd where it is not running."""
    for cmd in (["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart"],
                ["pg_ctlcluster", version, name, "restart"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode == 0:
            return
    raise RuntimeError(f"could not restart PostgreSQL {version}/{name}: {proc.stderr.strip()}")


def wait_until_up(url: str, timeout_s: float = 120.0) -> float:
    """Poll until PostgreSQL answers; returns the seconds waited, raises after `timeout_s`."""
    started = time.monotonic()
    while True:
        problem = pg_reachable(url)
        if problem is None:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"PostgreSQL did not come back within {timeout_s:.0f} s: {problem}")
        time.sleep(0.2)


def restart_trial(instance, pg_url: str, *, page_size: int = 7, restart_on_page: int = 3,
                  resolution_ms: int = 1) -> dict:
    """One tick cut by a PostgreSQL restart, then a clean tick; returns what each did."""
    from shadow_dagster.dagster.ingest import CURSOR_NAME, ingest
    from shadow_dagster.store.signal_store import SignalStore

    port = make_url(pg_url).port or 5432
    version, name = find_cluster(port)
    expected = expected_rows(instance, resolution_ms)
    result: dict = {"cluster": f"{version}/{name}"}
    with pg_schema(pg_url) as url:
        store = SignalStore(url)
        calls = {"n": 0}

        def restart_mid_tick():
            calls["n"] += 1
            if calls["n"] == restart_on_page:
                restart_cluster(version, name)

        try:
            try:
                ingest(instance, store, resolution_ms=resolution_ms, page_size=page_size, _after_rows=restart_mid_tick)
                result["first_tick_error"] = None
            except Exception as exc:  # noqa: BLE001 - the error is what this trial reports
                result["first_tick_error"] = f"{exc.__class__.__name__}: {exc}"
                result["first_tick_error_type"] = exc.__class__.__name__
        finally:
            result["restart_happened"] = calls["n"] >= restart_on_page
            result["seconds_until_up"] = round(wait_until_up(pg_url), 2)
        try:
            committed = store.get_cursor(CURSOR_NAME)
            report = ingest(instance, store, resolution_ms=resolution_ms, page_size=page_size, max_seconds=3600.0)
            result.update(cursor_after_failed_tick=committed, second_tick_ok=not report.backlog_left,
                          second_tick_cursor_before=report.cursor_before, **compare(store.rows(), expected))
        finally:
            store.dispose()
    return result
