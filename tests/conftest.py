"""Shared fixtures: a consolidated-SQLite Dagster instance and the PostgreSQL test database."""

from __future__ import annotations

import os
import uuid

import pytest

PG_URL = os.environ.get("SHADOW_DAGSTER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_reachable(url: str) -> str | None:
    import sqlalchemy as sa

    from shadow_dagster.store.engine import normalise_url

    try:
        engine = sa.create_engine(normalise_url(url))
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - report any connection failure as the skip reason
        return f"PostgreSQL at {url} unreachable: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL URL; skips off CI when the server is missing, fails under CI=true."""
    problem = _pg_reachable(PG_URL)
    if problem:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{problem} (CI=true requires PostgreSQL; set SHADOW_DAGSTER_TEST_PG_URL)")
        pytest.skip(problem)
    return PG_URL


@pytest.fixture
def pg_schema_url(pg_url):
    """A fresh PostgreSQL schema per test (dropped afterwards), as a URL with search_path."""
    import sqlalchemy as sa

    from shadow_dagster.store.engine import normalise_url

    schema = "t_" + uuid.uuid4().hex[:12]
    engine = sa.create_engine(normalise_url(pg_url))
    with engine.begin() as conn:
        conn.execute(sa.text(f'create schema "{schema}"'))
    sep = "&" if "?" in pg_url else "?"
    yield f"{pg_url}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'drop schema "{schema}" cascade'))
    engine.dispose()


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    """A DAGSTER_HOME whose dagster.yaml selects the consolidated SQLite event storage."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "event_log_storage:\n"
        "  module: dagster.core.storage.event_log\n"
        "  class: ConsolidatedSqliteEventLogStorage\n"
        f"  config: {{base_dir: {home / 'history'}}}\n"
        "telemetry: {enabled: false}\n"
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def instance(dagster_home):
    """A real DagsterInstance with consolidated SQLite event storage (global step cursor works)."""
    from dagster import DagsterInstance

    inst = DagsterInstance.get()
    yield inst
    inst.dispose()
