"""PostgreSQL shadow environment: the shadow run works in a shadow schema of its own.

On the run's first connection every base table of the live schema is copied into a fresh shadow
schema (`CREATE TABLE ... (LIKE ... INCLUDING ALL)` then `INSERT ... SELECT`); the step's
connections put only the shadow schema on `search_path`, so unqualified reads see the copies of
live data and writes land in the copies. A step's connection runs in one REPEATABLE READ
transaction that is rolled back if it changed any live table (a schema-qualified write), so a
shadow step can never commit a live write. What a step changed is saved to its outbox with
`COPY TO` (files, removed with the run's other shadow files); promotion replaces each live table's
rows in one transaction (`TRUNCATE` + `COPY FROM`, so grants, constraints and dependants stay),
after checking under an exclusive lock that the table still has the fingerprint it had when the
shadow run copied it.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import sqlalchemy as sa

from shadow_dagster.envs.workspace import Effect, PromotionRefused, slug
from shadow_dagster.speculation.isolation import ShadowIsolationError
from shadow_dagster.store.engine import normalise_url

KIND = "postgres_table"
_engines: dict[str, sa.Engine] = {}


def engine(url: str) -> sa.Engine:
    """One engine per URL and process (psycopg2: COPY goes through its copy_expert)."""
    if url not in _engines:
        _engines[url] = sa.create_engine(normalise_url(url), pool_pre_ping=True)
    return _engines[url]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tables(conn, schema: str) -> list[str]:
    return [r[0] for r in conn.execute(sa.text(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = :s AND table_type = 'BASE TABLE' "
        "ORDER BY 1"), {"s": schema})]


def table_fingerprint(conn, schema: str, table: str) -> str | None:
    cols = conn.execute(sa.text(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = :s AND table_name = :t "
        "ORDER BY ordinal_position"), {"s": schema, "t": table}).all()
    if not cols:
        return None
    name = f"{_q(schema)}.{_q(table)}"
    count, digest = conn.execute(sa.text(
        f"SELECT count(*), md5(coalesce(string_agg(md5(x::text), '' ORDER BY md5(x::text)), '')) FROM {name} AS x")).one()
    return hashlib.sha256(repr(([tuple(c) for c in cols], count, digest)).encode()).hexdigest()


def fingerprints(conn, schema: str) -> dict[str, str]:
    return {t: table_fingerprint(conn, schema, t) for t in _tables(conn, schema)}


def _columns(conn, schema: str, table: str) -> str:
    cols = conn.execute(sa.text(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = :s AND table_name = :t "
        "ORDER BY ordinal_position"), {"s": schema, "t": table}).scalars().all()
    return ", ".join(_q(c) for c in cols)


def _copy_out(conn, schema: str, table: str, path: Path) -> None:
    raw = conn.connection.dbapi_connection
    with raw.cursor() as cur, open(path, "w", encoding="utf-8", newline="") as fh:
        cur.copy_expert(f"COPY {_q(schema)}.{_q(table)} ({_columns(conn, schema, table)}) TO STDOUT", fh)


def _copy_in(conn, schema: str, table: str, columns: str, path: Path) -> None:
    raw = conn.connection.dbapi_connection
    with raw.cursor() as cur, open(path, encoding="utf-8", newline="") as fh:
        cur.copy_expert(f"COPY {_q(schema)}.{_q(table)} ({columns}) FROM STDIN", fh)


class PostgresEnvironment:
    """The shadow run's copy of one live schema, in a shadow schema shared by its steps."""

    def __init__(self, directory: Path, url: str, live_schema: str):
        self.url, self.live_schema = url, live_schema
        self.shadow_schema = "shadow_dagster_" + slug(str(directory))
        self.copied = False
        self.step_before: dict[str, str] = {}

    def _copy_live(self) -> None:
        with engine(self.url).begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {_q(self.shadow_schema)} CASCADE"))
            conn.execute(sa.text(f"CREATE SCHEMA {_q(self.shadow_schema)}"))
            for table in _tables(conn, self.live_schema):
                src, dst = f"{_q(self.live_schema)}.{_q(table)}", f"{_q(self.shadow_schema)}.{_q(table)}"
                # defaults that draw from a live sequence would advance it: the copy has none
                conn.execute(sa.text(f"CREATE TABLE {dst} (LIKE {src} INCLUDING ALL EXCLUDING DEFAULTS)"))
                conn.execute(sa.text(f"INSERT INTO {dst} SELECT * FROM {src}"))
        self.copied = True

    def begin_step(self) -> None:
        if not self.copied:
            self._copy_live()
        with engine(self.url).connect() as conn:
            self.step_before = fingerprints(conn, self.shadow_schema)

    @contextlib.contextmanager
    def connect(self):
        """A connection in one transaction with only the shadow schema on search_path; committed
        on success unless it changed a live table."""
        with engine(self.url).connect() as conn:
            conn.execute(sa.text("BEGIN ISOLATION LEVEL REPEATABLE READ"))
            try:
                live_before = fingerprints(conn, self.live_schema)
                conn.execute(sa.text(f"SET LOCAL search_path TO {_q(self.shadow_schema)}"))
                yield conn
                if fingerprints(conn, self.live_schema) != live_before:
                    raise ShadowIsolationError(f"a shadow step wrote live schema {self.live_schema!r} "
                                               "(a schema-qualified write); rolled back")
                conn.execute(sa.text("COMMIT"))
            except BaseException:
                conn.execute(sa.text("ROLLBACK"))
                raise

    def end_step(self, outbox: Path) -> list[Effect]:
        with engine(self.url).connect() as conn:
            after = fingerprints(conn, self.shadow_schema)
            changed = sorted(t for t in set(self.step_before) | set(after) if self.step_before.get(t) != after.get(t))
            out = []
            for table in changed:
                source = {"path": None, "ddl_schema": self.shadow_schema}
                if after.get(table) is not None:
                    outbox.mkdir(parents=True, exist_ok=True)
                    path = outbox / f"{slug(table)}.copy"
                    _copy_out(conn, self.shadow_schema, table, path)
                    source = {"path": str(path), "columns": _column_defs(conn, self.shadow_schema, table)}
                out.append(Effect(KIND, {"url": self.url, "schema": self.live_schema, "table": table}, source,
                                  self.step_before.get(table), after.get(table)))
            return out

    def close(self) -> None:
        with contextlib.suppress(sa.exc.SQLAlchemyError), engine(self.url).begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {_q(self.shadow_schema)} CASCADE"))


def _column_defs(conn, schema: str, table: str) -> list[list[str]]:
    """[name, SQL type] of each column, to create a table the step made."""
    return [list(r) for r in conn.execute(sa.text(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :s AND c.relname = :t AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"),
        {"s": schema, "t": table})]


def promote(effects: list[Effect]) -> None:
    """Replace the rows of each changed live table, all tables of one database in one transaction."""
    by_url: dict[str, list[Effect]] = {}
    for e in effects:
        by_url.setdefault(e.target["url"], []).append(e)
    for url, group in by_url.items():
        with engine(url).begin() as conn:
            for e in group:
                schema, table = e.target["schema"], e.target["table"]
                live = f"{_q(schema)}.{_q(table)}"
                exists = table_fingerprint(conn, schema, table) is not None
                if exists:
                    conn.execute(sa.text(f"LOCK TABLE {live} IN ACCESS EXCLUSIVE MODE"))
                if table_fingerprint(conn, schema, table) != e.before:
                    raise PromotionRefused(f"live table {schema}.{table} changed since the shadow run copied it")
                if e.after is None:
                    conn.execute(sa.text(f"DROP TABLE {live}"))
                    continue
                if not Path(e.source["path"]).exists():
                    raise PromotionRefused(f"the shadow copy of {schema}.{table} is gone")
                columns = e.source["columns"]
                if exists and [list(c) for c in _column_defs(conn, schema, table)] != columns:
                    conn.execute(sa.text(f"DROP TABLE {live}"))   # the step changed the table's columns
                    exists = False
                if exists:
                    conn.execute(sa.text(f"TRUNCATE {live}"))
                else:
                    conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {_q(schema)}"))
                    conn.execute(sa.text(f"CREATE TABLE {live} ({', '.join(f'{_q(n)} {t}' for n, t in columns)})"))
                _copy_in(conn, schema, table, ", ".join(_q(n) for n, _ in columns), Path(e.source["path"]))
                if table_fingerprint(conn, schema, table) != e.after:
                    raise PromotionRefused(f"the shadow copy of {schema}.{table} changed after the step")
