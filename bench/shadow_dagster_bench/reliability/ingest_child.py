"""The ingestion process the fault trials kill: `python -m shadow_dagster_bench.reliability.ingest_child`.

Arguments: DAGSTER_HOME, store URL, page size, TSA resolution. `SHADOW_DAGSTER_KILL_AT=<point>:<page>`
makes the process SIGKILL itself on the given page (1-based):
- `after_rows`: rows inserted, cursor not yet saved, transaction not committed;
- `mid_batch`: half of the page's rows inserted, then killed inside the insert;
- `after_commit`: the page's rows and cursor committed, before the next page is read.
Without it the parent kills the process at a random moment. Prints READY after imports and
DONE <json> at the end.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

KILL_ENV = "SHADOW_DAGSTER_KILL_AT"
KILL_POINTS = ("after_rows", "mid_batch", "after_commit")


def parse_kill(value: str | None) -> tuple[str, int] | None:
    """`point:page` -> (point, page); None when unset; ValueError naming the bad value."""
    if not value:
        return None
    point, _, page = value.partition(":")
    if point not in KILL_POINTS or not page.isdigit() or int(page) < 1:
        raise ValueError(f"{KILL_ENV}={value!r}: expected <{'|'.join(KILL_POINTS)}>:<page >= 1>")
    return point, int(page)


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(store, kill: tuple[str, int] | None):
    """Wire the kill point into the real store; returns the `_after_rows` hook for ingest()."""
    if kill is None:
        return None
    point, page = kill
    calls = {"n": 0}
    if point == "after_rows":
        def hook():
            calls["n"] += 1
            if calls["n"] == page:
                die()
        return hook
    if point == "mid_batch":
        real_insert = store._insert_rows

        def insert(conn, rows):
            calls["n"] += 1
            if calls["n"] == page:
                real_insert(conn, rows[: max(1, len(rows) // 2)])
                die()
            real_insert(conn, rows)
        store._insert_rows = insert
        return None
    real_write = store.write_batch

    def write_batch(rows, **kw):
        real_write(rows, **kw)
        calls["n"] += 1
        if calls["n"] == page:
            die()
    store.write_batch = write_batch
    return None


def main(argv: list[str]) -> int:
    home, url, page_size, resolution_ms = argv[0], argv[1], int(argv[2]), int(argv[3])
    kill = parse_kill(os.environ.get(KILL_ENV))
    from dagster import DagsterInstance

    from shadow_dagster.dagster.ingest import ingest
    from shadow_dagster.store.signal_store import SignalStore

    print("READY", flush=True)
    started = time.monotonic()
    instance = DagsterInstance.from_config(home)
    store = SignalStore(url)
    hook = install(store, kill)
    report = ingest(instance, store, resolution_ms=resolution_ms, page_size=page_size,
                    max_seconds=3600.0, _after_rows=hook)
    print("DONE " + json.dumps({"pages": report.pages, "rows": report.rows, "events": report.events,
                                "seconds": time.monotonic() - started}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
