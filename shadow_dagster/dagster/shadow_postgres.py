"""`ShadowPostgresResource`: a SQLAlchemy connection to one PostgreSQL schema, shadow-aware."""

from __future__ import annotations

from contextlib import contextmanager

import sqlalchemy as sa
from pydantic import Field

from shadow_dagster.dagster.shadow_env import ShadowSafe
from shadow_dagster.dagster.shadow_resources import ShadowRunAware
from shadow_dagster.envs import postgres_env


class ShadowPostgresResource(ShadowRunAware, ShadowSafe):
    """`get_connection()` yields a SQLAlchemy Connection in a transaction (committed when the block
    ends) with `schema_name` on `search_path`.

    In a shadow run the connection sees a shadow schema holding copies of the live schema's tables
    (taken on the run's first connection); writes land in the copies, a transaction that changed a
    live table is rolled back, and the tables a step changed are promoted into `schema_name` in one
    transaction on reuse.
    """

    url: str = Field(description="SQLAlchemy URL of the database, e.g. postgresql://user@host:5432/db.")
    schema_name: str = Field(default="public", description="The live schema the assets read and write.")

    def shadow_target(self) -> tuple[str, str]:
        """Where this resource's writes land: the live schema."""
        return postgres_env.KIND, f"{self.url}#{self.schema_name}"

    @contextmanager
    def get_connection(self):
        workspace = self._workspace()
        if workspace is None:
            with postgres_env.engine(self.url).begin() as conn:
                conn.execute(sa.text(f'SET LOCAL search_path TO "{self.schema_name.replace(chr(34), chr(34) * 2)}"'))
                yield conn
            return
        env = workspace.environment(postgres_env.KIND, f"{self.url}#{self.schema_name}",
                                    lambda d: postgres_env.PostgresEnvironment(d, self.url, self.schema_name))
        with env.connect() as conn:
            yield conn
