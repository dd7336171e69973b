"""PostgreSQL shadow environment: the shadow run works in a shadow schema of its own.

On the run's first connection every base table of the live schema is copied into a fresh shadow
schema (`CREATE TABLE ... (LIKE ... INCLUDING ALL)` then `INSERT ... SELECT`); the step's
connections put only the shadow schema on `search_path`, so unqualified reads see the copies of
live data and writes land in the copies. A step's connections act as the role
`shadow_dagster_shadow`, which owns the shadow schema and holds no privilege on anything live, so
a schema-qualified live write, live DDL or `nextval` on a live sequence fails in the shadow run. What a step changed is saved to its outbox with
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
ROLE = "shadow_dagster_shadow"   # owns shadow schemas; no privilege on anything live
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


def objects_fingerprint(conn, schema: str) -> str:
    """Fingerprint of what is not table rows: views, indexes, sequences."""
    rows = conn.execute(sa.text(
        "SELECT c.relkind::text, c.relname, CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) "
        "WHEN c.relkind = 'i' THEN pg_get_indexdef(c.oid) ELSE '' END "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s "
        "AND c.relkind IN ('v', 'm', 'i', 'S') ORDER BY 1, 2"), {"s": schema}).all()
    return hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()


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
        self.objects_before: str | None = None
        self.unpromotable: list[str] = []

    def _copy_live(self) -> None:
        with engine(self.url).begin() as conn:
            _ensure_role(conn)
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {_q(self.shadow_schema)} CASCADE"))
            conn.execute(sa.text(f"CREATE SCHEMA {_q(self.shadow_schema)} AUTHORIZATION {_q(ROLE)}"))
            for table in _tables(conn, self.live_schema):
                src, dst = f"{_q(self.live_schema)}.{_q(table)}", f"{_q(self.shadow_schema)}.{_q(table)}"
                conn.execute(sa.text(f"CREATE TABLE {dst} (LIKE {src} INCLUDING ALL)"))
                # a default that draws from a live sequence would advance it: the copy's has none
                for (column,) in conn.execute(sa.text(
                        "SELECT column_name FROM information_schema.columns WHERE table_schema = :s "
                        "AND table_name = :t AND column_default LIKE 'nextval(%'"),
                        {"s": self.shadow_schema, "t": table}):
                    conn.execute(sa.text(f"ALTER TABLE {dst} ALTER COLUMN {_q(column)} DROP DEFAULT"))
                conn.execute(sa.text(f"INSERT INTO {dst} SELECT * FROM {src}"))
                conn.execute(sa.text(f"ALTER TABLE {dst} OWNER TO {_q(ROLE)}"))
        self.copied = True

    def begin_step(self) -> None:
        if not self.copied:
            self._copy_live()
        with engine(self.url).connect() as conn:
            self.step_before = fingerprints(conn, self.shadow_schema)
            self.objects_before = objects_fingerprint(conn, self.shadow_schema)

    @contextlib.contextmanager
    def connect(self):
        """A connection as the role `shadow_dagster_shadow`, which owns the shadow schema and has no
        privilege on live objects (so a schema-qualified live write, DDL or `nextval` on a live
        sequence fails), with only the shadow schema on search_path; committed when the block ends.
        The connection goes back to the pool as the original user, or is discarded."""
        with engine(self.url).connect() as conn:
            try:
                conn.execute(sa.text(f"SET ROLE {_q(ROLE)}"))
                conn.execute(sa.text(f"SET search_path TO {_q(self.shadow_schema)}"))
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                try:
                    conn.rollback()
                    conn.execute(sa.text("RESET ROLE"))
                    conn.execute(sa.text("RESET search_path"))
                    conn.commit()
                except sa.exc.SQLAlchemyError:
                    conn.invalidate()

    def end_step(self, outbox: Path) -> list[Effect]:
        with engine(self.url).connect() as conn:
            after = fingerprints(conn, self.shadow_schema)
            if objects_fingerprint(conn, self.shadow_schema) != self.objects_before:
                self.unpromotable.append(f"the step changed views, indexes or sequences of schema {self.live_schema}, "
                                         "which are not promoted")
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


def _ensure_role(conn) -> None:
    """Create the shadow role once per server (NOLOGIN) and let the current user act as it."""
    exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": ROLE}).first()
    if not exists:
        try:
            with conn.begin_nested():
                conn.execute(sa.text(f"CREATE ROLE {_q(ROLE)} NOLOGIN"))
        except sa.exc.ProgrammingError as exc:
            if "already exists" not in str(exc):
                raise ShadowIsolationError(f"cannot create PostgreSQL role {ROLE} for shadow runs ({exc.orig}); "
                                           "create it (NOLOGIN) and grant it to this user") from None
        except sa.exc.IntegrityError:   # created concurrently by another shadow run
            pass
    try:
        with conn.begin_nested():
            conn.execute(sa.text(f"GRANT {_q(ROLE)} TO CURRENT_USER"))
    except sa.exc.SQLAlchemyError:   # already a member, or a superuser who needs no grant
        pass


def _column_defs(conn, schema: str, table: str) -> list[list[str]]:
    """[name, SQL type] of each column, to create a table the step made."""
    return [list(r) for r in conn.execute(sa.text(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :s AND c.relname = :t AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"),
        {"s": schema, "t": table})]


def check(effects: list[Effect]) -> None:
    """Raise PromotionRefused unless every live table still has the effect's `before` fingerprint."""
    for url in sorted({e.target["url"] for e in effects}):
        with engine(url).connect() as conn:
            for e in (e for e in effects if e.target["url"] == url):
                if table_fingerprint(conn, e.target["schema"], e.target["table"]) != e.before:
                    raise PromotionRefused(f"live table {e.target['schema']}.{e.target['table']} changed since "
                                           "the shadow run copied it")


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
