"""Warehouse benchmark: the repository's second example (examples/warehouse) with speculation off
and on, side by side in one run.

Workload. Each mode has its own Dagster instance and data folder and runs the same sequence of
real runs: January's `trip_update_job` and weekly `trip_update_job` ... (the history), then for
every month after it `trip_update_job`, and for each of the month's weeks the scheduled
`weekly_update_job` followed by the `publish_job` that the example's asset sensor requests.
- off: the example's own definitions, without shadow-dagster.
- on: the same definitions through `with_shadow`, as README.md says. Before each weekly run the
  real speculative sensor ticks; it sees the schedule's next tick and pre-executes the non-critical
  `trips_by_week` in a shadow run, which the bench executes in process. The scheduled run then
  starts and, when the provenance matches, promotes the shadow run's effects instead of querying.
The weekly runs are launched by a schedule that ticks every minute and requests the bench's next
week (the example's own weekly schedule ticks once a week, beyond any horizon). The bench starts
each scheduled run itself, with the tags Dagster's scheduler gives it, once the shadow run ended,
instead of waiting for the tick; it ticks the sensor only when the next tick is at least `margin_s`
away, so that the policy always sees the same lead. `WAREHOUSE_QUERY_S` (`query_s`) models the
seconds a remote warehouse takes to answer each metric query (the local DuckDB file answers at once).
Modes alternate week by week, so that machine drift hits both alike; `burners` CPU-burning
processes run beside the whole benchmark (a busy host).

Figures (last line, JSON): `hits`, `misses` (settled predictions of the on mode), `outputs_identical`
(1 when every live table and file of the two modes is equal after the run), `live_writes` (live
files or tables a shadow run changed, compared before and after each shadow run), `shadow_latest_seen`
(checks, after each shadow run, that found a shadow run as an asset's latest materialization or the
asset sensor asking for a run), `steps_added_to_user_jobs`, `ratio` (mean wall of the weekly runs
on / off) and the walls behind it: `live_wall_s` sums every live run after the history (the
monthly and publish runs, which nothing pre-executes, included).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "warehouse"
SCHEDULE = "bench_weekly_schedule"
MONTHS = ["2024-01-01", "2024-02-01", "2024-03-01"]
WEEKS = {"2024-01-01": ["2024-01-07", "2024-01-14", "2024-01-21", "2024-01-28"],
         "2024-02-01": ["2024-02-04", "2024-02-11", "2024-02-18", "2024-02-25"],
         "2024-03-01": ["2024-03-03", "2024-03-10", "2024-03-17", "2024-03-24"]}


def _load_example(data_dir: Path, state: dict, *, shadow: bool, speculation: dict):
    """The example's definitions on `data_dir`, plus the bench's minutely weekly schedule."""
    import dagster as dg

    os.environ["WAREHOUSE_DATA_DIR"] = str(data_dir)
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    for name in [m for m in sys.modules if m == "warehouse_project" or m.startswith("warehouse_project.")]:
        del sys.modules[name]
    import warehouse_project.defs
    from warehouse_project.defs.jobs import weekly_update_job

    def request(context):
        week = state.get("week")
        return dg.RunRequest(partition_key=week) if week else dg.SkipReason("no week due")

    schedule = dg.ScheduleDefinition(name=SCHEDULE, cron_schedule="* * * * *", job=weekly_update_job,
                                     execution_fn=request, default_status=dg.DefaultScheduleStatus.RUNNING)
    user = dg.Definitions.merge(dg.load_defs(warehouse_project.defs), dg.Definitions(schedules=[schedule]))
    if not shadow:
        return user, user
    from shadow_dagster import with_shadow

    return user, with_shadow(user, speculation=speculation)


def live_state(data: Path) -> dict:
    """Every live file (sha256; the DuckDB file by its tables) and every table's rows."""
    import duckdb

    files = {str(p.relative_to(data)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(data.rglob("*")) if p.is_file() and not p.name.startswith("warehouse.duckdb")}
    tables = {}
    if (data / "warehouse.duckdb").exists():
        conn = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
        try:
            for (name,) in conn.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall():
                tables[name] = conn.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()
        finally:
            conn.close()
    return {"files": files, "tables": tables}


def _changed(before: dict, after: dict) -> int:
    return sum(before[k].get(n) != after[k].get(n) for k in ("files", "tables") for n in before[k].keys() | after[k])


def _steps(defs, job: str) -> set[str]:
    return {n.name for n in defs.resolve_job_def(job).graph.node_defs}


@contextlib.contextmanager
def _burners(n: int):
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


class Mode:
    """One side of the comparison: its instance, data folder and definitions."""

    def __init__(self, name: str, root: Path, *, speculation: dict, state: dict):
        from dagster import DagsterInstance

        from shadow_dagster_bench.home import write_instance_yaml

        self.name, self.state = name, state
        self.home, self.data = root / name / "home", root / name / "data"
        self.home.mkdir(parents=True)
        write_instance_yaml(self.home)
        self.instance = DagsterInstance.from_config(str(self.home))
        self.user, self.defs = _load_example(self.data, state, shadow=name == "on", speculation=speculation)
        self.repo = self.defs.get_repository_def()
        self.sensor_cursor = None
        self.cursors: dict = {}
        self.weekly_walls: list[float] = []
        self.wall = 0.0            # every live run after the history

    def run(self, job: str, partition: str | None = None, tags: dict | None = None) -> tuple[str, float]:
        started = time.perf_counter()
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, partition_key=partition, tags=tags or {},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        wall = time.perf_counter() - started
        self.wall += wall
        if not result.success:
            raise RuntimeError(f"{self.name}: live run of {job} {partition or ''} failed")
        return result.run_id, wall

    def asset_sensor_tick(self):
        """The example's asset sensor evaluated from its cursor (which this does not move)."""
        from dagster import build_sensor_context

        sensor = self.defs.resolve_sensor_def("weekly_published_sensor")
        return sensor.evaluate_tick(build_sensor_context(instance=self.instance, repository_def=self.repo,
                                                         cursor=self.sensor_cursor))

    def publish(self) -> None:
        """What the asset sensor requests: the publish run(s)."""
        result = self.asset_sensor_tick()
        self.sensor_cursor = result.cursor
        for _ in result.run_requests or []:
            self.run("publish_job")

    def weekly(self, week: str, tick_iso: str) -> None:
        from shadow_dagster.signals.instances import SCHEDULE_TAG, SCHEDULED_AT_TAG

        _, wall = self.run("weekly_update_job", week, {SCHEDULE_TAG: SCHEDULE, SCHEDULED_AT_TAG: tick_iso})
        self.weekly_walls.append(wall)


def _next_tick(now: float) -> float:
    """The bench schedule's (every minute) first tick after `now`."""
    return (int(now) // 60 + 1) * 60.0


def _fit_fingerprints(on: Mode) -> list[str]:
    from shadow_dagster.dagster.fingerprints import fingerprint_path
    from shadow_dagster.dagster.ingest import ingest
    from shadow_dagster.dagster.instances import family_resolver
    from shadow_dagster.fingerprint import Fingerprint
    from shadow_dagster.signals.cases import cases_from_signals
    from shadow_dagster.store.engine import default_url
    from shadow_dagster.store.signal_store import SignalStore

    store = SignalStore(default_url())
    ingest(on.instance, store, resolution_ms=1, family_of=family_resolver(on.repo))
    cases = cases_from_signals(store.signals(), executed_only=True)
    store.dispose()
    fitted = []
    for workflow in sorted({c.workflow for c in cases}):
        fp = Fingerprint.fit([c for c in cases if c.workflow == workflow], window_days=None)
        path = fingerprint_path(workflow)
        path.parent.mkdir(parents=True, exist_ok=True)
        fp.save(path)
        fitted.append(workflow)
    return fitted


def _decision(week: str) -> str:
    """The sensor's stored decision for the weekly step of `week`, in its words."""
    from shadow_dagster.store.engine import default_url
    from shadow_dagster.store.signal_store import SignalStore

    store = SignalStore(default_url())
    try:
        mine = [d for d in store.decisions() if str(d.workflow_key).startswith(f"{week}@")]
    finally:
        store.dispose()
    return f"not pre-executed: {mine[-1].reason}" if mine else ""


def _shadow_latest(on: Mode) -> int:
    """1 if a shadow run is any asset's latest materialization or the asset sensor asks for a run."""
    from shadow_dagster.tags import is_shadow_run

    for key in on.repo.asset_graph.get_all_asset_keys():
        event = on.instance.get_latest_materialization_event(key)
        run = on.instance.get_run_by_id(event.run_id) if event is not None else None
        if run is not None and is_shadow_run(run.tags):
            return 1
    return int(bool(on.asset_sensor_tick().run_requests))


def run(as_json: bool = False, *, months: int = 2, trips_per_month: int = 20_000, query_s: float = 2.0,
        burners: int = 2, margin_s: float | None = None, echo=print) -> dict:
    """Run the benchmark; returns (and with `as_json` prints last) the figures."""
    from dagster import build_sensor_context

    from shadow_dagster.store.outcomes import read_outcomes
    from shadow_dagster.tags import SCHEDULED_FOR_TAG
    from shadow_dagster.dagster.shadow_runner import execute_shadow_request
    from shadow_dagster.dagster.speculative_sensor import SPECULATIVE_SENSOR_NAME
    from shadow_dagster.store.engine import default_url
    from shadow_dagster.signals.instances import tick_iso
    from shadow_dagster.store.signal_store import SignalStore

    if not 1 <= months <= len(MONTHS) - 1:
        raise ValueError(f"months must be in 1..{len(MONTHS) - 1} (the example's partitions end in March), "
                         f"got {months}")
    if not 0 <= query_s <= 60:
        raise ValueError(f"query_s must be in [0, 60] seconds, got {query_s}")
    margin_s = max(20.0, 2 * query_s + 10) if margin_s is None else margin_s
    saved_env = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "WAREHOUSE_DATA_DIR", "WAREHOUSE_TRIPS_PER_MONTH",
                                                "WAREHOUSE_QUERY_S")}
    root = Path(tempfile.mkdtemp(prefix="shadow-bench-warehouse-"))
    os.environ.update(WAREHOUSE_TRIPS_PER_MONTH=str(trips_per_month), WAREHOUSE_QUERY_S=str(query_s),
                      DAGSTER_HOME=str(root / "on" / "home"))
    state: dict = {"week": None}
    speculation = {"launch_overhead_s": 0.0, "report_interval_s": None, "warmup": False}
    shadow_runs, live_writes, latest_seen, walls_shadow, skipped = 0, 0, 0, [], []
    try:
        off = Mode("off", root, speculation=speculation, state=state)
        on = Mode("on", root, speculation=speculation, state=state)
        added = sum(len(_steps(on.defs, j) - _steps(on.user, j))
                    for j in ("trip_update_job", "weekly_update_job", "publish_job"))
        sensor = on.defs.resolve_sensor_def(SPECULATIVE_SENSOR_NAME)
        with _burners(burners):
            echo(f"history: {MONTHS[0]} and its weeks, both modes")
            for mode in (off, on):
                mode.run("trip_update_job", MONTHS[0])
                for i, week in enumerate(WEEKS[MONTHS[0]]):
                    mode.weekly(week, f"2024-01-{7 * i + 8:02d}T00:00:00+00:00")
                    mode.publish()
                mode.weekly_walls.clear()
                mode.wall = 0.0
            echo(f"fitted fingerprints: {', '.join(_fit_fingerprints(on))}")
            spec_cursor = None
            for month in MONTHS[1:1 + months]:
                for mode in (off, on):
                    mode.run("trip_update_job", month)
                for week in WEEKS[month]:
                    now = time.time()
                    if _next_tick(now) - now < margin_s:       # the same lead for every week
                        time.sleep(_next_tick(now) - now + 0.5)
                    state["week"] = week
                    tick = sensor.evaluate_tick(build_sensor_context(instance=on.instance, cursor=spec_cursor,
                                                                     repository_def=on.repo))
                    spec_cursor = tick.cursor
                    at = tick_iso(_next_tick(time.time()))
                    for req in tick.run_requests or []:
                        at = tick_iso(float(req.tags[SCHEDULED_FOR_TAG]))
                        before = live_state(on.data)
                        started = time.perf_counter()
                        execute_shadow_request(on.defs, req, on.instance, run_config={
                            "loggers": {"console": {"config": {"log_level": "WARNING"}}}})
                        walls_shadow.append(time.perf_counter() - started)
                        shadow_runs += 1
                        live_writes += _changed(before, live_state(on.data))
                        latest_seen += _shadow_latest(on)
                    state["week"] = None
                    for mode in ((off, on) if len(off.weekly_walls) % 2 == 0 else (on, off)):
                        mode.weekly(week, at)
                        mode.publish()
                    why = "" if tick.run_requests else f" ({_decision(week) or tick.skip_message[:200]})"
                    echo(f"{week}: weekly run off {off.weekly_walls[-1]:.2f}s, on {on.weekly_walls[-1]:.2f}s, "
                         f"{len(tick.run_requests or [])} shadow run(s){why}")
                    skipped.extend([why] if why else [])
            for _ in range(2):   # settle the last predictions
                spec_cursor = sensor.evaluate_tick(build_sensor_context(
                    instance=on.instance, cursor=spec_cursor, repository_def=on.repo)).cursor
        outcomes = read_outcomes(SignalStore(default_url()))
        identical = int(live_state(off.data) == live_state(on.data))
        result = {
            "hits": sum(o.stage == "hit" for o in outcomes), "misses": sum(o.stage == "miss" for o in outcomes),
            "shadow_runs": shadow_runs, "outputs_identical": identical, "live_writes": live_writes,
            "shadow_latest_seen": latest_seen, "steps_added_to_user_jobs": added,
            "ratio": round(statistics.mean(on.weekly_walls) / statistics.mean(off.weekly_walls), 4),
            "weekly_wall_s": {"off": round(statistics.mean(off.weekly_walls), 3),
                              "on": round(statistics.mean(on.weekly_walls), 3)},
            "live_wall_s": {"off": round(off.wall, 3), "on": round(on.wall, 3)},
            "shadow_run_wall_s": round(statistics.mean(walls_shadow), 3) if walls_shadow else None,
            "weeks": len(on.weekly_walls), "weeks_without_shadow_run": len(skipped), "query_s": query_s, "trips_per_month": trips_per_month,
            "burners": burners,
        }
        for mode in (off, on):
            mode.instance.dispose()
    finally:
        for name in [m for m in sys.modules if m == "warehouse_project" or m.startswith("warehouse_project.")]:
            del sys.modules[name]
        if str(EXAMPLE) in sys.path:
            sys.path.remove(str(EXAMPLE))
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    echo(f"hits {result['hits']}, misses {result['misses']}, outputs identical {bool(identical)}, "
         f"live writes {live_writes}, shadow latest seen {latest_seen}, steps added {added}; "
         f"weekly run on/off {result['ratio']}")
    if as_json:
        echo(json.dumps(result, sort_keys=True))
    return result
