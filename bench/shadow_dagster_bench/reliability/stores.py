"""Fresh, disposable signal-store databases for trials: a SQLite file or a PostgreSQL schema."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from shadow_dagster.store.engine import normalise_url


def pg_reachable(url: str) -> str | None:
    """None when PostgreSQL at `url` answers, else the reason it does not."""
    try:
        engine = sa.create_engine(normalise_url(url))
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure is the reason
        return f"{exc.__class__.__name__}: {str(exc).strip().splitlines()[0]}"


@contextlib.contextmanager
def pg_schema(pg_url: str) -> Iterator[str]:
    """A new schema in the database of `pg_url`, as a URL whose search_path selects it; dropped after."""
    schema = "rel_" + uuid.uuid4().hex[:12]
    engine = sa.create_engine(normalise_url(pg_url))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'create schema "{schema}"'))
        sep = "&" if "?" in pg_url else "?"
        yield f"{pg_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with contextlib.suppress(Exception), engine.begin() as conn:
            conn.execute(sa.text(f'drop schema if exists "{schema}" cascade'))
        engine.dispose()


@contextlib.contextmanager
def fresh_store_url(backend: str, workdir: Path, pg_url: str | None) -> Iterator[str]:
    """A URL for an empty signal store on `backend` ("sqlite" or "postgres")."""
    if backend == "sqlite":
        path = Path(workdir) / f"signals-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
    elif backend == "postgres":
        if not pg_url:
            raise ValueError("backend 'postgres' needs a PostgreSQL URL")
        with pg_schema(pg_url) as url:
            yield url
    else:
        raise ValueError(f"backend must be 'sqlite' or 'postgres', got {backend!r}")
