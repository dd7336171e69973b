"""The signal store: writes signal rows exactly once and answers time-range queries."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url

from shadow_dagster.signals.assemble import assemble
from shadow_dagster.signals.model import Signal, SignalRow
from shadow_dagster.store import schema
from shadow_dagster.store.engine import create_engine, create_schema, normalise_url
from shadow_dagster.errors import ShadowDagsterError

log = logging.getLogger("shadow_dagster.store")
DAY_MS = 86_400_000


class SignalStoreUnavailable(ShadowDagsterError, RuntimeError):
    """The signal store's database cannot be reached or written."""


class UnstorableText(ShadowDagsterError, ValueError):
    """A row holds text the backend cannot store (a NUL byte on PostgreSQL)."""


_TEXT_FIELDS = ("run_id", "job_name", "step_key", "partition_key", "workflow_key", "tags")


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class SignalStore:
    """Signal rows in SQLite (WAL) or PostgreSQL, a TimescaleDB hypertable when available."""

    def __init__(self, url: str, *, retention_days: float = 30.0):
        if not (isinstance(retention_days, (int, float)) and retention_days > 0):
            raise ValueError(f"retention_days must be a positive number of days, got {retention_days!r}")
        self.url = normalise_url(url)
        self.retention_days = float(retention_days)
        self.engine = create_engine(self.url)
        self.backend = self.engine.dialect.name
        self.timescale = False
        cols = ", ".join(schema.COLUMNS)
        if self.backend == "postgresql":
            self._insert_sql = f"insert into shadow_signals ({cols}) values %s on conflict do nothing"
        else:
            marks = ", ".join("?" * len(schema.COLUMNS))
            self._insert_sql = f"insert into shadow_signals ({cols}) values ({marks}) on conflict do nothing"
        self._guard(self._create)

    # -- set-up -------------------------------------------------------------------------------
    def _guard(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except sa.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise SignalStoreUnavailable(
                f"signal store {_safe_url(self.url)} is unreachable or not writable: {reason}"
            ) from exc

    def _create(self) -> None:
        create_schema(schema.metadata, self.engine)
        with self.engine.begin() as conn:
            conn.execute(
                self._insert(schema.meta)
                .values(key="schema_version", value=str(schema.SCHEMA_VERSION))
                .on_conflict_do_nothing()
            )
            found = conn.execute(
                sa.select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
            ).scalar_one()
            if int(found) != schema.SCHEMA_VERSION:
                raise RuntimeError(
                    f"signal store {_safe_url(self.url)} has schema version {found}, this shadow-dagster "
                    f"expects {schema.SCHEMA_VERSION}"
                )
            if self.backend == "postgresql":
                self.timescale = self._setup_timescale(conn)
        log.info(
            "signal store %s on %s: %s",
            _safe_url(self.url),
            self.backend,
            "TimescaleDB hypertable" if self.timescale else "plain table with a time index",
        )

    def _setup_timescale(self, conn) -> bool:
        available = conn.execute(
            sa.text("select 1 from pg_available_extensions where name = 'timescaledb'")
        ).first()
        if not available:
            return False
        conn.execute(sa.text("create extension if not exists timescaledb"))
        conn.execute(
            sa.text(
                "select create_hypertable('shadow_signals', 'ts_ms', chunk_time_interval => :chunk, "
                "if_not_exists => true, migrate_data => true)"
            ),
            {"chunk": DAY_MS},
        )
        return True

    def _insert(self, table):
        """An INSERT with this backend's ON CONFLICT clauses."""
        return (pg_insert if self.backend == "postgresql" else sqlite_insert)(table)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- writes -------------------------------------------------------------------------------
    def write_batch(
        self,
        rows: Sequence[SignalRow],
        *,
        cursor: tuple[str, int] | None = None,
        _after_rows=None,
    ) -> None:
        """Insert rows (duplicates of an event id are ignored) and save `cursor` in the same
        transaction: either both land or neither does. `_after_rows` is a fault-injection hook."""

        def run():
            with self.engine.begin() as conn:
                if rows:
                    self._insert_rows(conn, rows)
                if _after_rows is not None:
                    _after_rows()
                if cursor is not None:
                    self._save_cursor(conn, *cursor)

        self._guard(run)

    def _insert_rows(self, conn, rows: Sequence[SignalRow]) -> None:
        # The DBAPI's own bulk path (execute_values / executemany) on the transaction's connection:
        # SQLAlchemy's per-row parameter handling would cost more than the database itself.
        cur = conn.connection.dbapi_connection.cursor()
        try:
            if self.backend == "postgresql":
                from psycopg2.extras import execute_values

                try:
                    execute_values(cur, self._insert_sql, rows, page_size=len(rows))
                except ValueError as exc:  # raised client-side, before anything is sent
                    if "NUL" in str(exc):
                        raise UnstorableText(str(exc)) from exc
                    raise
            else:
                cur.executemany(self._insert_sql, rows)
        finally:
            cur.close()

    def split_storable(self, rows: Sequence[SignalRow]) -> tuple[list[SignalRow], list[tuple[int, str]]]:
        """Rows this backend can store, and (event id, reason) for those it cannot."""
        if self.backend != "postgresql":
            return list(rows), []
        ok, bad = [], []
        for r in rows:
            field = next((f for f in _TEXT_FIELDS if "\x00" in (getattr(r, f) or "")), None)
            if field is None:
                ok.append(r)
            else:
                bad.append((r.event_id, f"{field} contains a NUL byte, which PostgreSQL text cannot store"))
        return ok, bad

    def _save_cursor(self, conn, name: str, value: int) -> None:
        ins = self._insert(schema.cursors)
        conn.execute(
            ins.values(name=name, value=value, updated_ms=int(time.time() * 1000)).on_conflict_do_update(
                index_elements=["name"], set_={"value": value, "updated_ms": int(time.time() * 1000)}
            )
        )

    def get_cursor(self, name: str) -> int:
        """The last storage id committed under `name` (-1 when none)."""

        def run():
            with self.engine.connect() as conn:
                v = conn.execute(sa.select(schema.cursors.c.value).where(schema.cursors.c.name == name)).scalar()
            return -1 if v is None else int(v)

        return self._guard(run)

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Delete rows older than the retention window; returns how many were deleted."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        cutoff = now_ms - int(self.retention_days * DAY_MS)

        def run():
            with self.engine.begin() as conn:
                conn.execute(sa.delete(schema.decisions).where(schema.decisions.c.ts_ms < cutoff))
                return conn.execute(sa.delete(schema.signals).where(schema.signals.c.ts_ms < cutoff)).rowcount

        deleted = self._guard(run)
        if deleted:
            log.info("retention: deleted %d signal rows older than %.1f days", deleted, self.retention_days)
        return deleted

    def write_decisions(self, decisions: Sequence) -> None:
        """Store each prediction's latest decision (a `speculation.decisions.Decision`), replacing
        the one stored before."""
        if not decisions:
            return
        from dataclasses import asdict

        rows = [asdict(d) for d in decisions]
        ins = self._insert(schema.decisions)
        upsert = ins.on_conflict_do_update(
            index_elements=[schema.decisions.c.prediction_id],
            set_={c: getattr(ins.excluded, c) for c in rows[0] if c != "prediction_id"})

        def run():
            with self.engine.begin() as conn:
                conn.execute(upsert, rows)

        self._guard(run)

    def decisions(self, *, since_ms: int | None = None) -> list:
        """Stored decisions (`Decision`), oldest first."""
        from shadow_dagster.speculation.decisions import Decision

        q = sa.select(schema.decisions)
        if since_ms is not None:
            q = q.where(schema.decisions.c.ts_ms >= since_ms)

        def run():
            with self.engine.connect() as conn:
                return conn.execute(q.order_by(schema.decisions.c.ts_ms)).mappings().all()

        return [Decision(**row) for row in self._guard(run)]

    # -- reads --------------------------------------------------------------------------------
    def rows(
        self,
        *,
        run_id: str | None = None,
        job_name: str | None = None,
        step_key: str | None = None,
        workflow_key: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        run_ids: Iterable[str] | None = None,
    ) -> list[SignalRow]:
        """Rows matching every given filter, ordered by time then storage id."""
        t = schema.signals
        q = sa.select(*[t.c[name] for name in schema.COLUMNS])
        if run_id is not None:
            q = q.where(t.c.run_id == run_id)
        if run_ids is not None:
            q = q.where(t.c.run_id.in_(list(run_ids)))
        if job_name is not None:
            q = q.where(t.c.job_name == job_name)
        if step_key is not None:
            q = q.where(sa.or_(t.c.step_key == step_key, t.c.step_key.is_(None)))
        if workflow_key is not None:
            q = q.where(t.c.workflow_key == workflow_key)
        if since_ms is not None:
            q = q.where(t.c.ts_ms >= since_ms)
        if until_ms is not None:
            q = q.where(t.c.ts_ms <= until_ms)
        q = q.order_by(t.c.ts_ms, t.c.event_id)

        def run():
            with self.engine.connect() as conn:
                return [SignalRow(*r) for r in conn.execute(q)]

        return self._guard(run)

    def signals(self, **filters) -> list[Signal]:
        """Signals assembled from the rows matching `filters` (see `rows`)."""
        step_key = filters.get("step_key")
        found = assemble(self.rows(**filters))
        if step_key is not None:
            found = [s for s in found if s.step_key == step_key]
        return found

    def count_finished_runs(self, *, since_ms: int | None = None, exclude_jobs=()) -> int:
        """Runs that ended (success, failure, canceled) after `since_ms`, other jobs than `exclude_jobs`."""
        t = schema.signals
        q = sa.select(sa.func.count()).where(
            t.c.kind == "run", t.c.transition.in_(["success", "failure", "canceled"])
        )
        if since_ms is not None:
            q = q.where(t.c.ts_ms > since_ms)
        if exclude_jobs:
            q = q.where(t.c.job_name.not_in(list(exclude_jobs)))

        def run():
            with self.engine.connect() as conn:
                return int(conn.execute(q).scalar_one())

        return self._guard(run)

    def count(self) -> int:
        def run():
            with self.engine.connect() as conn:
                return conn.execute(sa.select(sa.func.count()).select_from(schema.signals)).scalar_one()

        return self._guard(run)
