"""SQLAlchemy engines for the embedded SQLite default and PostgreSQL (no Dagster import)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from typing import TYPE_CHECKING

from shadow_dagster.errors import ShadowDagsterError

if TYPE_CHECKING:  # SQLAlchemy loads when a store is opened, not when a code location imports this
    import sqlalchemy as sa

ENV_URL = "SHADOW_DAGSTER_STORE_URL"
SQLITE_FILENAME = "shadow_dagster.db"


class StoreConfigError(ShadowDagsterError, ValueError):
    """The store's configuration is invalid (bad URL, unsupported backend)."""


def normalise_url(url: str) -> str:
    """Validate a database URL and pin PostgreSQL to psycopg2 (SQLAlchemy 2.1 defaults to psycopg 3)."""
    from sqlalchemy.engine import make_url

    if not isinstance(url, str) or not url.strip():
        raise StoreConfigError("store URL is empty; give sqlite:///PATH or postgresql://USER@HOST/DB")
    try:
        parsed = make_url(url.strip())
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise StoreConfigError(
            f"store URL {url!r} is not a database URL ({exc}); expected sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DB"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg2")
        if not parsed.database:
            raise StoreConfigError(f"store URL {url!r} names no database (postgresql://USER@HOST/DB)")
    elif backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise StoreConfigError(
                f"store URL {url!r} is an in-memory SQLite database; signals must be durable, "
                "give sqlite:////absolute/path.db"
            )
    else:
        raise StoreConfigError(
            f"store URL {url!r} uses backend {backend!r}; shadow-dagster supports sqlite and postgresql"
        )
    return parsed.render_as_string(hide_password=False)


def default_url(dagster_home: str | None = None) -> str:
    """The store URL: $SHADOW_DAGSTER_STORE_URL, else SQLite inside DAGSTER_HOME."""
    if os.environ.get(ENV_URL):
        return normalise_url(os.environ[ENV_URL])
    home = dagster_home or os.environ.get("DAGSTER_HOME")
    if not home:
        raise StoreConfigError(
            "no signal store configured: set DAGSTER_HOME (SQLite default) or "
            f"{ENV_URL}=postgresql://USER@HOST/DB"
        )
    return "sqlite:///" + str(Path(home).absolute() / SQLITE_FILENAME)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")    # wait for a concurrent writer instead of failing
    _use_wal(cur)                               # readers never block the writer (daemon + workers)
    cur.execute("PRAGMA synchronous=NORMAL")    # durable in WAL mode at commit boundaries
    cur.close()


def _use_wal(cur, wait_s: float = 30.0) -> None:
    """Switch the database to WAL once (the mode is stored in the file). Switching needs the file
    to itself and SQLite answers "database is locked" at once, without the busy timeout, when
    another process holds it (several processes opening a fresh store together): retry a while."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def create_engine(url: str) -> sa.Engine:
    """An engine for `url` with WAL and a busy timeout on SQLite, pre-ping on PostgreSQL."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    url = normalise_url(url)
    if url.startswith("sqlite"):
        Path(make_url(url).database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)


_ALREADY_EXISTS = ("already exists", "duplicate key value")


def create_schema(metadata: sa.MetaData, engine: sa.Engine, attempts: int = 4) -> None:
    """Create `metadata`'s missing tables and indexes, tolerating other processes doing the same.

    `create_all` checks then creates, so two processes opening a fresh database together can both
    see a table missing; the loser gets "already exists" (SQLite, PostgreSQL) or a unique violation
    on the catalogue (PostgreSQL). Checking again then finds the table, so retry; other errors raise.
    """
    import sqlalchemy as sa

    for attempt in range(attempts):
        try:
            metadata.create_all(engine, checkfirst=True)
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError) as exc:
            if attempt == attempts - 1 or not any(m in str(exc.orig or exc) for m in _ALREADY_EXISTS):
                raise
            time.sleep(0.05 * (attempt + 1))
