"""Ingestion benchmark: the sensor's conversion + write path against a raw bulk insert.

Both sides write the same final rows into the same database in the same process, one after the
other, so the ratio is robust to the machine's noise. The backlog is made of real Dagster
EventLogEntry objects: the events of one real run of a 40-asset job (run, step, output,
materialization and log events), copied under fresh run ids and storage ids. Run metadata comes
from an in-memory lookup (the real path asks the instance once per page); the end-to-end figure
covers that too, over the event log of real runs.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from shadow_dagster_bench.home import pg_test_url, write_instance_yaml
from shadow_dagster.dagster.events import EventConverter, run_info_from_tags
from shadow_dagster.store import schema
from shadow_dagster.store.signal_store import SignalStore

PAGE = 2000
N_ASSETS = 40


def _bench_job():
    import dagster as dg

    def make(i, upstream):
        deps = [upstream] if upstream else []

        @dg.asset(name=f"a{i:02d}", deps=deps, tags={"shadow_dagster/critical": "false"})
        def _asset(context):
            context.log.info(f"computing a{i:02d}")
            return dg.MaterializeResult(metadata={"rows": i, "shadow_dagster/output_bytes": 1000 + i})

        return _asset

    assets, prev = [], None
    for i in range(N_ASSETS):
        a = make(i, prev)
        assets.append(a)
        prev = a
    return dg.Definitions(assets=assets, jobs=[dg.define_asset_job("bench_job")]).resolve_job_def("bench_job")


def _instance(home: Path):
    from dagster import DagsterInstance

    home.mkdir(parents=True, exist_ok=True)
    write_instance_yaml(home)
    return DagsterInstance.from_config(str(home))


def real_runs(instance, min_events: int, echo=print) -> int:
    """Execute the bench job until the event log holds `min_events`; returns the count."""
    job = _bench_job()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    n = 0
    while True:
        job.execute_in_process(instance=instance, run_config=quiet, tags={"shadow_dagster/workflow": f"bench-{n}"})
        n += 1
        count = len(instance.event_log_storage.get_logs_for_all_runs_by_log_id(after_cursor=-1))
        if count >= min_events:
            echo(f"  {n} real runs -> {count} event log records")
            return count


def synthetic_backlog(template: list, n_events: int):
    """Copies of a real run's entries under fresh run ids: `{storage_id: entry}` and run infos."""
    backlog, infos, sid, k = {}, {}, 0, 0
    span = template[-1].timestamp - template[0].timestamp + 1.0
    while sid < n_events:
        run_id = str(uuid.uuid4())
        infos[run_id] = run_info_from_tags(
            run_id, "bench_job", {"shadow_dagster/workflow": f"wf-{k}", "dagster/partition": f"2026-01-{k % 28 + 1:02d}"}
        )
        shift = k * span
        for e in template:
            sid += 1
            de = e.dagster_event
            backlog[sid] = e._replace(
                run_id=run_id, timestamp=e.timestamp + shift,
                dagster_event=de._replace(logging_tags={**de.logging_tags, "run_id": run_id}) if de else None,
            )
            if sid >= n_events:
                break
        k += 1
    return backlog, infos


def _pages(backlog: dict):
    ids = list(backlog)
    for i in range(0, len(ids), PAGE):
        yield {sid: backlog[sid] for sid in ids[i : i + PAGE]}


def sensor_path(store: SignalStore, backlog: dict, infos: dict, resolution_ms: int = 1):
    """Convert and write page by page with the cursor, exactly as `ingest` does; returns rows, s."""
    converter = EventConverter(resolution_ms, lambda ids: {i: infos[i] for i in ids if i in infos})
    rows, t0 = [], time.perf_counter()
    for page in _pages(backlog):
        conv = converter.convert(page)
        store.write_batch(conv.rows, cursor=("bench", max(page)))
        rows.extend(conv.rows)
    return rows, time.perf_counter() - t0


def raw_insert(engine: sa.Engine, rows: list, table: str = "bench_raw_signals") -> float:
    """Bulk-insert the same rows with the DBAPI's executemany into a copy of the signal table."""
    md = sa.MetaData()
    copy = schema.signals.to_metadata(md, name=table)
    for idx in list(copy.indexes):
        idx.name = f"{table}_{idx.name}"
    copy.primary_key.name = f"{table}_pk"
    md.drop_all(engine)
    md.create_all(engine)
    cols = ", ".join(schema.COLUMNS)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        t0 = time.perf_counter()
        if engine.dialect.name == "postgresql":
            from psycopg2.extras import execute_values

            for i in range(0, len(rows), PAGE):
                execute_values(cur, f"insert into {table} ({cols}) values %s", rows[i : i + PAGE], page_size=PAGE)
                raw.commit()
        else:
            marks = ", ".join("?" * len(schema.COLUMNS))
            for i in range(0, len(rows), PAGE):
                cur.executemany(f"insert into {table} ({cols}) values ({marks})", rows[i : i + PAGE])
                raw.commit()
        elapsed = time.perf_counter() - t0
        cur.close()
    finally:
        raw.close()
    md.drop_all(engine)
    return elapsed


def _backend(name: str, url: str, backlog: dict, infos: dict, echo) -> dict:
    store = SignalStore(url)
    with store.engine.begin() as conn:
        conn.execute(schema.signals.delete())
    rows, sensor_s = sensor_path(store, backlog, infos)
    raw_s = raw_insert(store.engine, rows)
    assert store.count() == len(rows), "sensor path lost or duplicated rows"
    with store.engine.begin() as conn:
        conn.execute(schema.signals.delete())
    store.dispose()
    n = len(backlog)
    out = {
        f"{name}_sensor_events_per_s": round(n / sensor_s),
        f"{name}_raw_events_per_s": round(n / raw_s),
        f"{name}_ratio": round(raw_s / sensor_s, 3),
        f"{name}_rows": len(rows),
    }
    echo(
        f"  {name:<9} sensor path {n / sensor_s:>10,.0f} events/s | raw bulk insert {n / raw_s:>10,.0f} events/s"
        f" | ratio {raw_s / sensor_s:.2f} ({len(rows):,} rows)"
    )
    return out


def run(events: int = 200_000, real_events: int = 20_000, pg_url: str | None = None, echo=print) -> dict:
    """Run the whole ingestion benchmark; returns the figures (also echoed as a table)."""
    from shadow_dagster.dagster.ingest import ingest

    pg_url = pg_url or pg_test_url()
    result: dict = {"events": events}
    with tempfile.TemporaryDirectory() as tmp:
        instance = _instance(Path(tmp) / "home")
        echo(f"real runs of a {N_ASSETS}-asset job until >= {real_events:,} events ...")
        n_real = real_runs(instance, real_events, echo)
        entries = instance.event_log_storage.get_logs_for_all_runs_by_log_id(after_cursor=-1)
        first_run = next(iter(entries.values())).run_id
        template = [e for e in entries.values() if e.run_id == first_run]

        store = SignalStore(f"sqlite:///{tmp}/e2e.db")
        report = ingest(instance, store, resolution_ms=1, max_seconds=3600)
        result["e2e_events"] = report.events
        result["e2e_events_per_s"] = round(report.events / report.seconds)
        echo(f"  end-to-end tick over real runs: {report.events:,} events in {report.seconds:.2f}s "
             f"= {report.events / report.seconds:,.0f} events/s ({report.rows:,} rows)")
        assert report.events == n_real
        store.dispose()

        backlog, infos = synthetic_backlog(template, events)
        echo(f"backlog: {len(backlog):,} EventLogEntry records ({len(template)} per run, {len(infos):,} runs)")
        result.update(_backend("sqlite", f"sqlite:///{tmp}/bench.db", backlog, infos, echo))
        try:
            result.update(_backend("postgres", pg_url, backlog, infos, echo))
        except Exception as exc:  # noqa: BLE001 - report, do not hide, a missing server
            echo(f"  postgres  not measured: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
            result["postgres_ratio"] = None
        instance.dispose()
    return result
