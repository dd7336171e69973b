"""Assets that write through resources (DuckDB tables, files; `deps=`, `MaterializeResult`) are
pre-executed in shadow storage and promoted on reuse, without `@shadow_reusable`: nothing live is
written while the shadow run runs, and the live outputs equal those of a run without speculation."""


import hashlib
import threading

import duckdb
import pytest
from dagster import AssetKey, DagsterInstance, Definitions, MaterializeResult, asset, define_asset_job
from dagster_duckdb import DuckDBResource

from shadow_dagster.dagster.critical import guard_assets
from shadow_dagster.dagster.shadow_duckdb import ShadowDuckDBResource
from shadow_dagster.dagster.shadow_files import ShadowFiles
from shadow_dagster.dagster.shadow_runner import execute_shadow_request, shadow_request
from shadow_dagster.dagster.shadow_job import build_catalog, shadow_job
from shadow_dagster.dagster.step_effects import EFFECTS_META
from shadow_dagster.tags import CRITICAL_TAG, REUSED_FROM, is_shadow_run

NONCRIT = {CRITICAL_TAG: "false"}


def project(root, duck_cls=ShadowDuckDBResource):
    """raw (critical) loads trips; trip_stats (non-critical) rebuilds a table, deletes and inserts
    a day's rows of a shared table; report (non-critical) writes a CSV and appends to a live log."""
    gate = {"entered": threading.Event(), "release": threading.Event(), "calls": []}
    gate["release"].set()

    @asset(code_version="1")
    def raw(duckdb: duck_cls) -> MaterializeResult:
        with duckdb.get_connection() as conn:
            conn.execute("CREATE OR REPLACE TABLE trips AS SELECT range AS id, range % 7 AS day, range * 1.5 AS fare "
                         "FROM range(1000)")
            conn.execute("CREATE TABLE IF NOT EXISTS daily (day BIGINT, n BIGINT, fare DOUBLE)")
            conn.execute("INSERT INTO daily VALUES (99, 1, 1.0)")   # a row of another day: must survive
        return MaterializeResult(metadata={"rows": 1000})

    @asset(code_version="1", deps=[raw], op_tags=NONCRIT)
    def trip_stats(context, duckdb: duck_cls) -> MaterializeResult:
        shadow = is_shadow_run(context.run.tags)
        gate["calls"].append("shadow" if shadow else "live")
        with duckdb.get_connection() as conn:
            conn.execute("CREATE OR REPLACE TABLE stats AS SELECT day, count(*) AS n, sum(fare) AS fare "
                         "FROM trips GROUP BY day ORDER BY day")
            conn.execute("DELETE FROM daily WHERE day < 7")
            conn.execute("INSERT INTO daily SELECT day, count(*), sum(fare) FROM trips GROUP BY day")
            n = conn.execute("SELECT count(*) FROM stats").fetchone()[0]
        if shadow:
            gate["entered"].set()
            assert gate["release"].wait(60)
        return MaterializeResult(metadata={"days": n})

    @asset(code_version="1", deps=[trip_stats], op_tags=NONCRIT)
    def report(context, duckdb: duck_cls, files: ShadowFiles):
        gate["calls"].append("shadow-report" if is_shadow_run(context.run.tags) else "live-report")
        with duckdb.get_connection() as conn:
            rows = conn.execute("SELECT day, n, fare FROM stats ORDER BY day").fetchall()
        out = files.path("reports", "stats.csv")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("day,n,fare\n" + "".join(f"{d},{n},{f}\n" for d, n, f in rows))
        with open(files.path("log.txt"), "a") as log:
            log.write(f"report {len(rows)}\n")

    assets = guard_assets([raw, trip_stats, report])
    resources = {"duckdb": duck_cls(database=str(root / "live" / "warehouse.duckdb")),
                 "files": ShadowFiles(base_dir=str(root / "live" / "files"))}
    (root / "live" / "files").mkdir(parents=True, exist_ok=True)
    (root / "live" / "files" / "log.txt").write_text("started\n")
    jobs = [define_asset_job("daily_job", selection=["raw", "trip_stats", "report"]), shadow_job(assets)]
    return Definitions(assets=assets, jobs=jobs, resources=resources), gate


def live_bytes(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "live").rglob("*")) if p.is_file()}


def tables(database) -> dict:
    conn = duckdb.connect(str(database), read_only=True)
    try:
        names = [r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return {n: conn.execute(f"SELECT * FROM {n} ORDER BY ALL").fetchall() for n in names}
    finally:
        conn.close()


def materialize(defs, instance, keys):
    return defs.resolve_job_def("daily_job").execute_in_process(
        instance=instance, asset_selection=[AssetKey(k) for k in keys])


def test_duckdb_and_file_writes_are_pre_executed_in_shadow_storage_and_promoted(instance, tmp_path):
    defs, gate = project(tmp_path)
    catalog = build_catalog(defs.get_repository_def())
    for name in ("trip_stats", "report"):
        (info,) = [i for a, i in catalog.items() if a.endswith("/" + name)]
        assert not info.critical and info.refusal is None          # shadow-aware resources: eligible
    materialize(defs, instance, ["raw"])
    before, before_tables = live_bytes(tmp_path), tables(tmp_path / "live" / "warehouse.duckdb")
    gate["release"].clear()
    out = {}
    thread = threading.Thread(target=lambda: out.update(r=execute_shadow_request(
        defs, shadow_request(["trip_stats", "report"], prediction_id="p-res"), instance)))
    thread.start()
    try:
        assert gate["entered"].wait(60)
        # while the shadow run runs: the live database file and every live file are untouched
        assert live_bytes(tmp_path) == before
        assert tables(tmp_path / "live" / "warehouse.duckdb") == before_tables
    finally:
        gate["release"].set()
        thread.join()
    shadow = out["r"]
    assert shadow.success and live_bytes(tmp_path) == before
    assert gate["calls"] == ["shadow", "shadow-report"]
    live = materialize(defs, instance, ["trip_stats", "report"])
    assert gate["calls"] == ["shadow", "shadow-report"]              # both promoted, neither recomputed
    for node in ("trip_stats", "report"):
        meta = live.asset_materializations_for_node(node)[0].metadata
        assert meta[REUSED_FROM].value == shadow.run_id and EFFECTS_META in meta
    assert live.asset_materializations_for_node("trip_stats")[0].metadata["days"].value == 7

    # the same workflow without speculation gives byte-equal files and equal tables
    off_defs, off_gate = project(tmp_path / "off")
    with DagsterInstance.ephemeral() as off:
        materialize(off_defs, off, ["raw", "trip_stats", "report"])
    assert off_gate["calls"] == ["live", "live-report"]
    assert tables(tmp_path / "live" / "warehouse.duckdb") == tables(tmp_path / "off" / "live" / "warehouse.duckdb")
    for rel in ("reports/stats.csv", "log.txt"):
        assert (tmp_path / "live" / "files" / rel).read_bytes() == (tmp_path / "off" / "live" / "files" / rel).read_bytes()
    assert (tmp_path / "live" / "files" / "log.txt").read_text() == "started\nreport 7\n"


def test_a_live_table_changed_after_the_shadow_copy_refuses_promotion(instance, tmp_path):
    defs, gate = project(tmp_path)
    materialize(defs, instance, ["raw"])
    assert execute_shadow_request(defs, shadow_request(["trip_stats"], prediction_id="p-stale"), instance).success
    conn = duckdb.connect(str(tmp_path / "live" / "warehouse.duckdb"))
    conn.execute("INSERT INTO daily VALUES (98, 2, 2.0)")       # a live write the shadow copy never saw
    conn.close()
    live = materialize(defs, instance, ["trip_stats"])
    assert gate["calls"] == ["shadow", "live"]                     # refused: the live step computed
    assert REUSED_FROM not in live.asset_materializations_for_node("trip_stats")[0].metadata
    assert (98, 2, 2.0) in tables(tmp_path / "live" / "warehouse.duckdb")["daily"]   # the live write survived


def test_a_live_file_changed_after_the_shadow_copy_refuses_promotion(instance, tmp_path):
    defs, gate = project(tmp_path)
    materialize(defs, instance, ["raw", "trip_stats"])
    assert execute_shadow_request(defs, shadow_request(["report"], prediction_id="p-file"), instance).success
    (tmp_path / "live" / "files" / "log.txt").write_text("started\nrotated\n")
    materialize(defs, instance, ["report"])
    assert gate["calls"][-2:] == ["shadow-report", "live-report"]
    assert (tmp_path / "live" / "files" / "log.txt").read_text() == "started\nrotated\nreport 7\n"


def test_a_plain_duckdb_resource_is_refused_before_the_body(instance, tmp_path):
    defs, gate = project(tmp_path, duck_cls=DuckDBResource)
    (info,) = [i for a, i in build_catalog(defs.get_repository_def()).items() if a.endswith("/trip_stats")]
    assert info.refusal and "'duckdb'" in info.refusal
    materialize(defs, instance, ["raw"])
    before = live_bytes(tmp_path)
    refused = execute_shadow_request(defs, shadow_request(["trip_stats"], prediction_id="p-plain"), instance,
                                     raise_on_error=False)
    assert not refused.success and gate["calls"] == [] and live_bytes(tmp_path) == before


def test_shadow_files_refuse_paths_outside_base_dir(tmp_path):
    files = ShadowFiles(base_dir=str(tmp_path / "live"))
    assert files.path("a", "b.csv") == tmp_path / "live" / "a" / "b.csv"
    with pytest.raises(ValueError, match="outside base_dir"):
        files.path("..", "escape.csv")


def test_a_shadow_aware_resource_outside_a_guarded_body_refuses_to_open_live_storage(instance, tmp_path):
    """Definitions not wrapped by with_shadow / guard_assets: in a shadow run the resource has no
    step workspace and opens nothing, live or shadow."""
    from dagster import materialize

    from shadow_dagster.tags import SHADOW_TAG

    @asset(op_tags=NONCRIT)
    def unguarded(files: ShadowFiles):
        files.path("out.txt").write_text("shadow")

    live = tmp_path / "live"
    live.mkdir()
    result = materialize([unguarded], instance=instance, tags={SHADOW_TAG: "true"}, raise_on_error=False,
                         resources={"files": ShadowFiles(base_dir=str(live))})
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "outside a guarded step body" in failure.step_failure_data.error.cause.message
    assert list(live.iterdir()) == []


def test_a_value_asset_is_reused_without_shadow_reusable(instance, tmp_path):
    """with_shadow's guard alone makes plain bodies reusable, annotated or not."""
    from dagster import FilesystemIOManager

    calls = []

    @asset(code_version="1")
    def orders() -> list:
        return [1, 2, 3]

    @asset(code_version="1", op_tags=NONCRIT)
    def features(context, orders: list) -> dict:
        calls.append("shadow" if is_shadow_run(context.run.tags) else "live")
        return {"total": sum(orders)}

    @asset(code_version="1", op_tags=NONCRIT)
    def untyped(context, orders):
        calls.append("shadow-untyped" if is_shadow_run(context.run.tags) else "live-untyped")
        return len(orders)

    assets = guard_assets([orders, features, untyped])
    defs = Definitions(assets=assets, jobs=[shadow_job(assets)],
                       resources={"io_manager": FilesystemIOManager(base_dir=str(tmp_path / "live"))})
    job = defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(instance=instance, asset_selection=[AssetKey("orders")])
    shadow = execute_shadow_request(defs, shadow_request(["features", "untyped"], prediction_id="p-val"), instance)
    assert shadow.success and calls == ["shadow", "shadow-untyped"]
    live = job.execute_in_process(instance=instance, asset_selection=[AssetKey("features"), AssetKey("untyped")])
    assert calls == ["shadow", "shadow-untyped"]
    for node in ("features", "untyped"):
        assert live.asset_materializations_for_node(node)[0].metadata[REUSED_FROM].value == shadow.run_id
    assert live.output_for_node("features") == {"total": 6} and live.output_for_node("untyped") == 3


def _one_asset_defs(tmp_path, body, **asset_kw):
    """raw (critical, seeds the live database and a log file) -> step (non-critical, `body`)."""
    (tmp_path / "live" / "files").mkdir(parents=True, exist_ok=True)
    @asset(code_version="1")
    def raw(duckdb: ShadowDuckDBResource, files: ShadowFiles) -> MaterializeResult:
        with duckdb.get_connection() as conn:
            conn.execute("CREATE OR REPLACE TABLE t (id INTEGER PRIMARY KEY, v INTEGER DEFAULT 7)")
            conn.execute("INSERT INTO t VALUES (1, 1)")
        (tmp_path / "live" / "files" / "log.txt").write_text("line1\n")
        return MaterializeResult()

    @asset(code_version="1", deps=[raw], op_tags=NONCRIT, **asset_kw)
    def step(context, duckdb: ShadowDuckDBResource, files: ShadowFiles):
        return body(context, duckdb, files)

    assets = guard_assets([raw, step])
    resources = {"duckdb": ShadowDuckDBResource(database=str(tmp_path / "live" / "w.duckdb")),
                 "files": ShadowFiles(base_dir=str(tmp_path / "live" / "files"))}
    return Definitions(assets=assets, jobs=[define_asset_job("j", selection=["raw", "step"]), shadow_job(assets)],
                       resources=resources)


def shadow_then_live(defs, instance, prediction):
    """raw live, `step` in a shadow run, then `step` live; returns the live result."""
    job = defs.resolve_job_def("j")
    job.execute_in_process(instance=instance, asset_selection=[AssetKey("raw")])
    assert execute_shadow_request(defs, shadow_request(["step"], prediction_id=prediction), instance).success
    return job.execute_in_process(instance=instance, asset_selection=[AssetKey("step")])


def test_a_shadow_duckdb_connection_cannot_reach_the_live_file_or_any_live_path(instance, tmp_path):
    live_db = tmp_path / "live" / "w.duckdb"
    attempts = {}

    def body(context, duckdb, files):
        with duckdb.get_connection() as conn:
            for name, sql in {"attach": f"ATTACH '{live_db}' AS l", "copy": f"COPY (SELECT 1) TO '{tmp_path}/live/x.csv'",
                              "unlock": "SET enable_external_access = true"}.items():
                try:
                    conn.execute(sql)
                    if name == "attach":
                        conn.execute("INSERT INTO l.t VALUES (2, 2)")
                    attempts[name] = "succeeded"
                except Exception as exc:  # noqa: BLE001 - the test records the refusal
                    attempts[name] = type(exc).__name__
        return MaterializeResult()

    defs = _one_asset_defs(tmp_path, body)
    materialize_job = defs.resolve_job_def("j")
    materialize_job.execute_in_process(instance=instance, asset_selection=[AssetKey("raw")])
    before = live_bytes(tmp_path)
    assert execute_shadow_request(defs, shadow_request(["step"], prediction_id="p-lock"), instance).success
    assert "succeeded" not in attempts.values() and set(attempts) == {"attach", "copy", "unlock"}
    assert live_bytes(tmp_path) == before


def test_promotion_keeps_live_table_constraints_and_base_dir_appends_keep_live_content(instance, tmp_path):
    calls = []

    def body(context, duckdb, files):
        calls.append(is_shadow_run(context.run.tags))
        with duckdb.get_connection() as conn:
            conn.execute("INSERT INTO t (id) VALUES (2)")
        with open(files.path() / "log.txt", "a") as fh:      # through the base directory itself
            fh.write("line2\n")
        return MaterializeResult()

    live = shadow_then_live(_one_asset_defs(tmp_path, body), instance, "p-keep")
    assert calls == [True] and REUSED_FROM in live.asset_materializations_for_node("step")[0].metadata
    assert (tmp_path / "live" / "files" / "log.txt").read_text() == "line1\nline2\n"
    conn = duckdb.connect(str(tmp_path / "live" / "w.duckdb"))
    try:
        assert conn.execute("SELECT * FROM t ORDER BY id").fetchall() == [(1, 1), (2, 7)]
        with pytest.raises(duckdb.ConstraintException):                  # the primary key survived
            conn.execute("INSERT INTO t VALUES (1, 1)")
    finally:
        conn.close()


@pytest.mark.parametrize("case", ["view", "checks"])
def test_steps_whose_effects_cannot_be_promoted_are_computed_live(instance, tmp_path, case):
    """A step that changed a view (not promoted) or that has asset checks is never reused."""
    from dagster import AssetCheckResult, AssetCheckSpec

    calls = []

    def body(context, duckdb, files):
        calls.append(is_shadow_run(context.run.tags))
        with duckdb.get_connection() as conn:
            conn.execute("CREATE OR REPLACE VIEW big AS SELECT * FROM t WHERE v > 0" if case == "view"
                         else "INSERT INTO t VALUES (3, 3)")
        return MaterializeResult(check_results=[AssetCheckResult(passed=True)]) if case == "checks" else None

    extra = {"check_specs": [AssetCheckSpec("ok", asset="step")]} if case == "checks" else {}
    assert shadow_then_live(_one_asset_defs(tmp_path, body, **extra), instance, f"p-{case}").success
    assert calls == [True, False]                                         # the live step ran its body
    conn = duckdb.connect(str(tmp_path / "live" / "w.duckdb"), read_only=True)
    query = "SELECT count(*) FROM big" if case == "view" else "SELECT count(*) FROM t WHERE id = 3"
    assert conn.execute(query).fetchone() == (1,)
    conn.close()
