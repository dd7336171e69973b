"""`ShadowDuckDBResource`: dagster-duckdb's DuckDBResource, shadow-aware (extra `shadow-dagster[duckdb]`)."""

from __future__ import annotations

import os
from contextlib import contextmanager

from dagster_duckdb import DuckDBResource

from shadow_dagster.dagster.shadow_env import ShadowSafe
from shadow_dagster.dagster.shadow_resources import ShadowRunAware
from shadow_dagster.envs import duckdb_env


class ShadowDuckDBResource(ShadowRunAware, DuckDBResource, ShadowSafe):
    """A drop-in for dagster-duckdb's `DuckDBResource`.

    Live runs connect to `database` as DuckDBResource does. In a shadow run `get_connection()`
    connects to a copy of the live database taken when the step first connects (the live file is
    opened read-only only for the copy), so the step reads live tables and writes only the copy;
    the tables it changed are promoted into `database` in one transaction on reuse.
    """

    def shadow_target(self) -> tuple[str, str]:
        """Where this resource's writes land: the live database file."""
        return duckdb_env.KIND, os.path.abspath(self.database)

    @contextmanager
    def get_connection(self):
        workspace = self._workspace()
        if workspace is None or self.database == ":memory:":
            with super().get_connection() as conn:
                yield conn
            return
        env = workspace.environment(
            duckdb_env.KIND, os.path.abspath(self.database),
            lambda d: duckdb_env.DuckDBEnvironment(d, self.database, self.connection_config, workspace.run.root))
        conn = env.connect()
        try:
            yield conn
        finally:
            conn.close()
