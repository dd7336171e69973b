"""Shared fixtures: a consolidated-SQLite Dagster instance and the PostgreSQL test database."""

from __future__ import annotations

import os

import pytest

from shadow_dagster_bench.home import pg_test_url

PG_URL = pg_test_url()


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL URL; skips off CI when the server is missing, fails under CI=true."""
    from shadow_dagster_bench.reliability.stores import pg_reachable

    problem = pg_reachable(PG_URL)
    if problem:
        problem = f"PostgreSQL at {PG_URL} unreachable: {problem}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{problem} (CI=true requires PostgreSQL; set SHADOW_DAGSTER_TEST_PG_URL)")
        pytest.skip(problem)
    return PG_URL


@pytest.fixture
def pg_schema_url(pg_url):
    """A fresh PostgreSQL schema per test (dropped afterwards), as a URL with search_path."""
    from shadow_dagster_bench.reliability.stores import pg_schema

    with pg_schema(pg_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    """A fresh signal-store URL on each backend: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    """A DAGSTER_HOME whose dagster.yaml selects the consolidated SQLite event storage."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    from shadow_dagster_bench.home import write_instance_yaml

    write_instance_yaml(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def instance(dagster_home):
    """A real DagsterInstance with consolidated SQLite event storage (global step cursor works)."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as inst:
        yield inst


@pytest.fixture(autouse=True)
def _no_leftover_defs_state_storage():
    """Each test starts with no current defs-state storage and leaves none behind. A DagsterInstance
    entered and not exited in order (a failed test's generator, a nested `with`) would otherwise
    leave its storage as the current one; once that instance is collected, every later Definitions
    load in the session fails with "Attempted to resolve undefined DagsterInstance weakref"."""
    from shadow_dagster.dagster.compat import CURRENT_DEFS_STATE_STORAGE

    token = CURRENT_DEFS_STATE_STORAGE.set(None)
    yield
    try:
        CURRENT_DEFS_STATE_STORAGE.reset(token)
    except ValueError:              # the test switched contexts; nothing of ours to restore
        CURRENT_DEFS_STATE_STORAGE.set(None)
