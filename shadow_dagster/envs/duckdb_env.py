"""DuckDB shadow environment: the step works on a copy of the live database file.

On first use the live database is attached read-only just long enough to copy it
(`COPY FROM DATABASE`) and fingerprint its tables; every statement of the step then runs against
the copy, so `CREATE OR REPLACE`, `INSERT`, `DELETE` and `DROP` change nothing live. Promotion
replaces the changed tables in the live database in one transaction, after checking that each
still has the fingerprint it had when the copy was taken.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from shadow_dagster.envs.workspace import Effect, PromotionRefused

KIND = "duckdb_table"
_LOCK_WAIT_S = 60.0   # a live writer holds DuckDB's file lock; wait for it like dagster-duckdb does


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect(database: str, *, read_only: bool = False, config: dict | None = None, wait_s: float = _LOCK_WAIT_S):
    """duckdb.connect, retried with backoff while another process holds the file lock."""
    import duckdb

    delay, deadline = 0.05, time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(database, read_only=read_only, config=dict(config or {}))
        except (duckdb.IOException, RuntimeError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _attach(conn, database: str, alias: str, wait_s: float = _LOCK_WAIT_S) -> None:
    import duckdb

    delay, deadline = 0.05, time.monotonic() + wait_s
    while True:
        try:
            conn.execute(f"ATTACH {_literal(database)} AS {_quote(alias)} (READ_ONLY)")
            return
        except (duckdb.IOException, RuntimeError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def fingerprints(conn, catalog: str) -> dict[tuple[str, str], str]:
    """{(schema, table): fingerprint} of every base table in `catalog`: columns, row count and an
    order-independent sum of row hashes."""
    tables = conn.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? AND NOT temporary "
        "ORDER BY 1, 2", [catalog]).fetchall()
    out = {}
    for schema, table in tables:
        out[(schema, table)] = table_fingerprint(conn, catalog, schema, table)
    return out


def table_fingerprint(conn, catalog: str, schema: str, table: str) -> str | None:
    cols = conn.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? "
        "AND table_name = ? ORDER BY column_index", [catalog, schema, table]).fetchall()
    if not cols:
        return None
    name = f"{_quote(catalog)}.{_quote(schema)}.{_quote(table)}"
    count, total = conn.execute(f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM {name} AS t").fetchone()
    return hashlib.sha256(repr((cols, count, str(total))).encode()).hexdigest()


class DuckDBEnvironment:
    """The shadow run's copy of one live DuckDB database, shared by its steps."""

    def __init__(self, directory: Path, live_database: str, config: dict | None = None, allowed_root: Path | None = None):
        self.live_database = os.path.abspath(live_database)
        self.run_database = str(directory / "run.duckdb")
        self.config = dict(config or {})
        self.allowed_root = str(allowed_root or directory)   # the only files a shadow connection may touch
        self.copied = False
        self.step_before: dict[tuple[str, str], str] = {}
        self.objects_before: str | None = None
        self.unpromotable: list[str] = []

    def _copy_live(self) -> None:
        conn = connect(self.run_database, config=self.config)
        try:
            if os.path.exists(self.live_database):
                _attach(conn, self.live_database, "shadow_dagster_live")
                try:
                    conn.execute(f"COPY FROM DATABASE shadow_dagster_live TO {_quote(_catalog(conn))}")
                finally:
                    conn.execute("DETACH shadow_dagster_live")
        finally:
            conn.close()
        self.copied = True

    def begin_step(self) -> None:
        if not self.copied:
            self._copy_live()
        conn = connect(self.run_database, config=self.config)
        try:
            self.step_before = fingerprints(conn, _catalog(conn))
            self.objects_before = objects_fingerprint(conn, _catalog(conn))
        finally:
            conn.close()

    def connect(self):
        """A read-write connection to the run's copy that can reach no file outside the shadow
        run's folder: no ATTACH of the live database, no COPY TO a live path, no extension
        install; the setting is locked, so SQL cannot lift it."""
        conn = connect(self.run_database, config=self.config)
        try:
            if not conn.execute("SELECT current_setting('lock_configuration')").fetchone()[0]:
                root = self.allowed_root.rstrip("/") + "/"
                conn.execute(f"SET allowed_directories = [{_literal(root)}]")
                conn.execute("SET enable_external_access = false")
                conn.execute("SET lock_configuration = true")
        except BaseException:
            conn.close()
            raise
        return conn

    def end_step(self, outbox: Path) -> list[Effect]:
        conn = connect(self.run_database, config=self.config)
        try:
            catalog = _catalog(conn)
            after = fingerprints(conn, catalog)
            if objects_fingerprint(conn, catalog) != self.objects_before:
                self.unpromotable.append(f"the step changed views, indexes or sequences of {self.live_database}, "
                                         "which are not promoted")
            changed = sorted(k for k in set(self.step_before) | set(after) if self.step_before.get(k) != after.get(k))
            if not changed:
                return []
            outbox.mkdir(parents=True, exist_ok=True)
            out_db = str(outbox / "tables.duckdb")
            conn.execute(f"ATTACH {_literal(out_db)} AS shadow_dagster_out")
            try:
                for schema, table in changed:
                    if after.get((schema, table)) is None:
                        continue
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS shadow_dagster_out.{_quote(schema)}")
                    conn.execute(f"CREATE TABLE shadow_dagster_out.{_quote(schema)}.{_quote(table)} AS "
                                 f"SELECT * FROM {_quote(catalog)}.{_quote(schema)}.{_quote(table)}")
            finally:
                conn.execute("DETACH shadow_dagster_out")
        finally:
            conn.close()
        return [Effect(KIND, {"database": self.live_database, "schema": s, "table": t}, {"database": out_db},
                       self.step_before.get((s, t)), after.get((s, t))) for s, t in changed]


def objects_fingerprint(conn, catalog: str) -> str:
    """Fingerprint of what is not table rows: views, indexes, sequences and macros."""
    parts = []
    for query in ("SELECT schema_name, view_name, sql FROM duckdb_views() WHERE database_name = ? AND NOT internal",
                  "SELECT schema_name, index_name, sql FROM duckdb_indexes() WHERE database_name = ?",
                  "SELECT schema_name, sequence_name, '' FROM duckdb_sequences() WHERE database_name = ?",
                  "SELECT schema_name, function_name, '' FROM duckdb_functions() WHERE database_name = ? "
                  "AND NOT internal"):
        parts.append(sorted(map(tuple, conn.execute(query, [catalog]).fetchall())))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _catalog(conn) -> str:
    return conn.execute("SELECT current_database()").fetchone()[0]


def _columns(conn, catalog: str, e: Effect) -> list:
    return conn.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? "
        "AND table_name = ? ORDER BY column_index", [catalog, e.target["schema"], e.target["table"]]).fetchall()


def check(effects: list[Effect], conn=None, catalog: str | None = None) -> None:
    """Raise PromotionRefused unless every live table still has the effect's `before` fingerprint
    (on `conn`, else on a connection of its own to the effects' database)."""
    if conn is None:
        for database in sorted({e.target["database"] for e in effects}):
            if not os.path.exists(database):   # never create a live file to check it
                if any(e.before is not None for e in effects if e.target["database"] == database):
                    raise PromotionRefused(f"live database {database} is gone")
                continue
            own = connect(database)
            try:
                check([e for e in effects if e.target["database"] == database], own, _catalog(own))
            finally:
                own.close()
        return
    for e in effects:
        now = table_fingerprint(conn, catalog, e.target["schema"], e.target["table"])
        if now != e.before:
            raise PromotionRefused(f"live table {e.target['schema']}.{e.target['table']} in {e.target['database']} "
                                   "changed since the shadow step copied it")


def promote(effects: list[Effect], config: dict | None = None) -> None:
    """Apply the effects on one live database in one transaction (all or none)."""
    by_db: dict[str, list[Effect]] = {}
    for e in effects:
        by_db.setdefault(e.target["database"], []).append(e)
    for database, group in by_db.items():
        sources = {e.source["database"] for e in group}
        if len(sources) != 1 or not os.path.exists(next(iter(sources))):
            raise PromotionRefused(f"the shadow copy of {database} is gone")
        conn = connect(database, config=config)
        try:
            catalog = _catalog(conn)
            _attach(conn, next(iter(sources)), "shadow_dagster_src")
            try:
                _promote_tables(conn, catalog, group)
            finally:
                conn.execute("DETACH shadow_dagster_src")
        finally:
            conn.close()


def _promote_tables(conn, catalog: str, group: list[Effect]) -> None:
    conn.execute("BEGIN TRANSACTION")
    try:
        check(group, conn, catalog)
        for schema in sorted({e.target["schema"] for e in group if e.after is not None}):
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(catalog)}.{_quote(schema)}")
        for e in group:
            live = f"{_quote(catalog)}.{_quote(e.target['schema'])}.{_quote(e.target['table'])}"
            if e.after is None:
                conn.execute(f"DROP TABLE IF EXISTS {live}")
                continue
            src = f"shadow_dagster_src.{_quote(e.target['schema'])}.{_quote(e.target['table'])}"
            if table_fingerprint(conn, "shadow_dagster_src", e.target["schema"], e.target["table"]) != e.after:
                raise PromotionRefused(f"the shadow copy of {e.target['table']} changed after the step")
            if _columns(conn, catalog, e) == _columns(conn, "shadow_dagster_src", e):
                # same columns: replace the rows, keeping the live table's constraints and defaults
                conn.execute(f"DELETE FROM {live}")
                conn.execute(f"INSERT INTO {live} SELECT * FROM {src}")
            else:
                conn.execute(f"CREATE OR REPLACE TABLE {live} AS SELECT * FROM {src}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise

