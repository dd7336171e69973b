"""Exactly-once ingestion under faults: kill the ingesting process, resume, compare with the log.

Every trial starts an empty signal store, runs `ingest` in a child process that is SIGKILLed
(at a seeded random moment, or at a deterministic point of a page), checks the store as the
crash left it (no row beyond the committed cursor), re-runs ingestion to completion and compares
the rows with the ones the same EventConverter makes from the whole event log:
- duplicates: an event id stored twice, or a row for an event that makes no row;
- losses: an event that makes a row but has none;
- mismatched: a row whose content differs from the expected row.
"""

from __future__ import annotations

import collections
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from shadow_dagster_bench.reliability.ingest_child import KILL_ENV, KILL_POINTS
from shadow_dagster_bench.reliability.stores import fresh_store_url

MODES = ("random", *KILL_POINTS)


def expected_rows(instance, resolution_ms: int) -> dict:
    """{event_id: row} that converting the whole event log gives (the reference)."""
    from shadow_dagster.dagster.events import EventConverter
    from shadow_dagster.dagster.ingest import run_lookup

    records = instance.event_log_storage.get_logs_for_all_runs_by_log_id(after_cursor=-1)
    conversion = EventConverter(resolution_ms, run_lookup(instance)).convert(records)
    return {row.event_id: row for row in conversion.rows}


def compare(rows, expected: dict) -> dict:
    """Duplicates, losses and mismatched rows of `rows` against the reference."""
    counts = collections.Counter(r.event_id for r in rows)
    dup_ids = sum(n - 1 for n in counts.values() if n > 1)
    unexpected = sum(1 for eid in counts if eid not in expected)
    by_id = {r.event_id: r for r in rows}
    mismatched = sum(1 for eid, r in by_id.items() if eid in expected and tuple(r) != tuple(expected[eid]))
    return {"duplicates": dup_ids + unexpected, "losses": len(expected.keys() - counts.keys()),
            "mismatched": mismatched}


def _child_env(home: str, kill: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    env["DAGSTER_HOME"] = home
    if kill:
        env[KILL_ENV] = kill
    return env


def run_child(home: str, url: str, page_size: int, resolution_ms: int, *, kill: str | None = None,
              kill_after_s: float | None = None, timeout_s: float = 300.0) -> dict:
    """Run the ingestion child; SIGKILL it `kill_after_s` after READY when given. Returns what happened."""
    cmd = [sys.executable, "-m", "shadow_dagster_bench.reliability.ingest_child", home, url, str(page_size),
           str(resolution_ms)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_child_env(home, kill))
    deadline = time.monotonic() + timeout_s
    lines: list[str] = []
    try:
        line = proc.stdout.readline()
        lines.append(line)
        if line.strip() != "READY":
            proc.wait(timeout=timeout_s)
            raise RuntimeError(f"ingestion child failed to start: {proc.stderr.read()[-2000:]}")
        if kill_after_s is not None:
            end = time.monotonic() + kill_after_s
            while proc.poll() is None and time.monotonic() < end:
                select.select([], [], [], min(0.005, max(0.0, end - time.monotonic())))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    lines += out.splitlines()
    done = next((ln for ln in lines if ln.startswith("DONE ")), None)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"ingestion child exited {proc.returncode}: {err[-2000:]}")
    import json

    return {"killed": proc.returncode == -signal.SIGKILL,
            "done": json.loads(done[5:]) if done else None}


def store_state(url: str, expected: dict) -> dict:
    """After a crash: rows beyond the committed cursor, and expected rows missing at or below it."""
    from shadow_dagster.dagster.ingest import CURSOR_NAME
    from shadow_dagster.store.signal_store import SignalStore

    store = SignalStore(url)
    try:
        cursor = store.get_cursor(CURSOR_NAME)
        ids = {r.event_id for r in store.rows()}
    finally:
        store.dispose()
    return {"cursor": cursor, "beyond_cursor": sum(1 for i in ids if i > cursor),
            "missing_below_cursor": sum(1 for i in expected if i <= cursor and i not in ids)}


def resume(instance, url: str, page_size: int, resolution_ms: int, expected: dict) -> dict:
    """Ingest to completion in this process and compare the store with the reference."""
    from shadow_dagster.dagster.ingest import ingest
    from shadow_dagster.store.signal_store import SignalStore

    store = SignalStore(url)
    try:
        report = ingest(instance, store, resolution_ms=resolution_ms, page_size=page_size, max_seconds=3600.0)
        if report.backlog_left:
            raise RuntimeError("resume left a backlog: ingestion did not complete")
        return compare(store.rows(), expected)
    finally:
        store.dispose()


def calibrate(home: str, workdir: Path, backend: str, pg_url: str | None, page_size: int,
              resolution_ms: int) -> dict:
    """One uninterrupted child run: pages and seconds from READY to DONE (bounds the random kills)."""
    with fresh_store_url(backend, workdir, pg_url) as url:
        result = run_child(home, url, page_size, resolution_ms)
    if result["done"] is None:
        raise RuntimeError("calibration run did not finish")
    return result["done"]


def fault_trials(instance, home: str, workdir: Path, *, backend: str, trials: int, seed: int = 0,
                 pg_url: str | None = None, page_size: int = 7, resolution_ms: int = 1,
                 echo: Callable[[str], None] | None = None) -> dict:
    """`trials` kill-and-resume trials on `backend`, cycling random and deterministic kill points."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    rng = random.Random(seed)
    expected = expected_rows(instance, resolution_ms)
    cal = calibrate(home, workdir, backend, pg_url, page_size, resolution_ms)
    pages = max(1, cal["pages"])
    totals = collections.Counter()
    by_mode = collections.Counter()
    started = time.monotonic()
    for i in range(trials):
        mode = MODES[i % len(MODES)]
        with fresh_store_url(backend, workdir, pg_url) as url:
            if mode == "random":
                run = run_child(home, url, page_size, resolution_ms, kill_after_s=rng.uniform(0, 1.1 * cal["seconds"]))
            else:
                run = run_child(home, url, page_size, resolution_ms, kill=f"{mode}:{rng.randint(1, pages)}")
                if not run["killed"]:
                    raise RuntimeError(f"kill point {mode} did not fire (child finished)")
            crash = store_state(url, expected) if run["killed"] else {"beyond_cursor": 0, "missing_below_cursor": 0}
            result = resume(instance, url, page_size, resolution_ms, expected)
        totals.update(result)
        totals["beyond_cursor"] += crash["beyond_cursor"]
        totals["missing_below_cursor"] += crash["missing_below_cursor"]
        totals["killed"] += int(run["killed"])
        by_mode[mode] += 1
        if echo and (i + 1) % 10 == 0:
            echo(f"  {backend}: {i + 1}/{trials} trials, duplicates {totals['duplicates']}, losses {totals['losses']}")
    return {"backend": backend, "trials": trials, "killed": totals["killed"],
            "completed_before_kill": trials - totals["killed"], "by_mode": dict(by_mode),
            "duplicates": totals["duplicates"], "losses": totals["losses"], "mismatched": totals["mismatched"],
            "rows_beyond_cursor_after_crash": totals["beyond_cursor"],
            "rows_missing_below_cursor_after_crash": totals["missing_below_cursor"],
            "expected_rows": len(expected), "pages_per_pass": pages,
            "uninterrupted_pass_seconds": round(cal["seconds"], 3),
            "seconds": round(time.monotonic() - started, 1)}
