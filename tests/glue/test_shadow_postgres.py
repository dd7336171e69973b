"""ShadowPostgresResource: a shadow run works in a shadow schema (live tables readable, never
written), and the live step promotes the tables it changed in one transaction."""

import threading
import uuid

import pytest
import sqlalchemy as sa
from dagster import AssetKey, DagsterInstance, Definitions, MaterializeResult, asset, define_asset_job

from shadow_dagster.dagster.critical import guard_assets
from shadow_dagster.dagster.shadow_postgres import ShadowPostgresResource
from shadow_dagster.dagster.shadow_runner import execute_shadow_request, shadow_request
from shadow_dagster.dagster.shadow_job import build_catalog, shadow_job
from shadow_dagster.store.engine import normalise_url
from shadow_dagster.tags import CRITICAL_TAG, REUSED_FROM, is_shadow_run

pytestmark = pytest.mark.postgres
NONCRIT = {CRITICAL_TAG: "false"}


@pytest.fixture
def schemas(pg_url):
    names = []

    def make():
        name = "sd_test_" + uuid.uuid4().hex[:10]
        with sa.create_engine(normalise_url(pg_url)).begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {name}"))
        names.append(name)
        return name

    yield make
    engine = sa.create_engine(normalise_url(pg_url))
    with engine.begin() as conn:
        for name in names:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
        leftovers = conn.execute(sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'shadow_dagster_%'"))
        assert [r[0] for r in leftovers] == [], "a shadow run left its shadow schema behind"
    engine.dispose()


def project(pg_url, schema, live_write=None):
    gate = {"entered": threading.Event(), "release": threading.Event(), "calls": []}
    gate["release"].set()

    @asset(code_version="1")
    def trips(db: ShadowPostgresResource) -> MaterializeResult:
        with db.get_connection() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS trips"))
            conn.execute(sa.text("CREATE TABLE trips AS SELECT g AS id, g % 7 AS day, g * 1.5 AS fare "
                                 "FROM generate_series(1, 500) g"))
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS daily (day int, n bigint, fare numeric)"))
            conn.execute(sa.text("INSERT INTO daily VALUES (99, 1, 1.0)"))
            conn.execute(sa.text("CREATE SEQUENCE IF NOT EXISTS seq"))
        return MaterializeResult()

    @asset(code_version="1", deps=[trips], op_tags=NONCRIT)
    def stats(context, db: ShadowPostgresResource) -> MaterializeResult:
        shadow = is_shadow_run(context.run.tags)
        gate["calls"].append("shadow" if shadow else "live")
        with db.get_connection() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS stats"))
            conn.execute(sa.text("CREATE TABLE stats AS SELECT day, count(*) AS n FROM trips GROUP BY day"))
            conn.execute(sa.text("DELETE FROM daily WHERE day < 7"))
            conn.execute(sa.text("INSERT INTO daily SELECT day, count(*), sum(fare) FROM trips GROUP BY day"))
            if live_write:
                conn.commit()                      # SQLAlchemy 2 style: the next statement is a new transaction
                conn.execute(sa.text(live_write.format(schema=schema)))
        if shadow:
            gate["entered"].set()
            assert gate["release"].wait(60)
        return MaterializeResult(metadata={"days": 7})

    assets = guard_assets([trips, stats])
    defs = Definitions(assets=assets, jobs=[define_asset_job("daily", selection=["trips", "stats"]), shadow_job(assets)],
                       resources={"db": ShadowPostgresResource(url=pg_url, schema_name=schema)})
    return defs, gate


def state(pg_url, schema) -> dict:
    engine = sa.create_engine(normalise_url(pg_url))
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s "
                                     "ORDER BY 1"), {"s": schema}).scalars().all()
        out = {n: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {schema}.{n}")).all())) for n in names}
    engine.dispose()
    return out


def materialize(defs, instance, keys):
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[AssetKey(k) for k in keys])


def test_shadow_schema_isolation_and_transactional_promotion(pg_url, schemas, instance):
    live_schema = schemas()
    defs, gate = project(pg_url, live_schema)
    (info,) = [i for a, i in build_catalog(defs.get_repository_def()).items() if a.endswith("/stats")]
    assert info.refusal is None
    materialize(defs, instance, ["trips"])
    before = state(pg_url, live_schema)
    gate["release"].clear()
    out = {}
    thread = threading.Thread(target=lambda: out.update(r=execute_shadow_request(
        defs, shadow_request(["stats"], prediction_id="p-pg"), instance)))
    thread.start()
    try:
        assert gate["entered"].wait(60)
        assert state(pg_url, live_schema) == before                 # while the shadow run runs
    finally:
        gate["release"].set()
        thread.join()
    assert out["r"].success and state(pg_url, live_schema) == before
    live = materialize(defs, instance, ["stats"])
    assert gate["calls"] == ["shadow"]                               # promoted, not recomputed
    assert live.asset_materializations_for_node("stats")[0].metadata[REUSED_FROM].value == out["r"].run_id

    off_schema = schemas()
    off_defs, _ = project(pg_url, off_schema)
    with DagsterInstance.ephemeral() as off:
        materialize(off_defs, off, ["trips", "stats"])
    assert state(pg_url, live_schema) == state(pg_url, off_schema)   # identical to speculation off


@pytest.mark.parametrize("live_write", [
    "INSERT INTO {schema}.trips VALUES (0, 0, 0)",       # a schema-qualified live write
    "SELECT nextval('{schema}.seq')",                    # a live sequence
    "CREATE VIEW {schema}.v AS SELECT 1 AS one",         # live DDL
    "CREATE TABLE public.shadow_dagster_probe (x int)",  # another schema
])
def test_a_shadow_step_cannot_write_anything_live(pg_url, schemas, instance, live_write):
    live_schema = schemas()
    defs, gate = project(pg_url, live_schema, live_write)
    materialize(defs, instance, ["trips"])
    before = live_objects(pg_url, live_schema)
    result = execute_shadow_request(defs, shadow_request(["stats"], prediction_id="p-pgq"), instance,
                                    raise_on_error=False)
    assert not result.success and gate["calls"] == ["shadow"]
    assert live_objects(pg_url, live_schema) == before


def live_objects(pg_url, schema) -> tuple:
    engine = sa.create_engine(normalise_url(pg_url))
    with engine.connect() as conn:
        rels = conn.execute(sa.text("SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n "
                                    "ON n.oid = c.relnamespace WHERE n.nspname IN (:s, 'public') ORDER BY 1, 2"),
                            {"s": schema}).all()
        seq = conn.execute(sa.text(f"SELECT last_value, is_called FROM {schema}.seq")).one()
    engine.dispose()
    return state(pg_url, schema), [tuple(r) for r in rels], tuple(seq)


def test_promotion_is_refused_when_the_live_table_changed(pg_url, schemas, instance):
    live_schema = schemas()
    defs, gate = project(pg_url, live_schema)
    materialize(defs, instance, ["trips"])
    assert execute_shadow_request(defs, shadow_request(["stats"], prediction_id="p-pgs"), instance).success
    engine = sa.create_engine(normalise_url(pg_url))
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {live_schema}.daily VALUES (98, 2, 2.0)"))
    engine.dispose()
    materialize(defs, instance, ["stats"])
    assert gate["calls"] == ["shadow", "live"]
    assert (98, 2, 2) in state(pg_url, live_schema)["daily"]
