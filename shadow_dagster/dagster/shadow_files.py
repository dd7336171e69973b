"""`ShadowFiles`: paths under a live directory, shadow-aware."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from shadow_dagster.dagster.shadow_env import ShadowSafe
from shadow_dagster.dagster.shadow_resources import ShadowRunAware
from shadow_dagster.envs import files_env


class ShadowFiles(ShadowRunAware, ShadowSafe):
    """Paths under a live directory, made shadow-aware.

    `path("reports", "summary.csv")` is `base_dir/reports/summary.csv` in live runs. In a shadow
    run it is the same path under the step's shadow root, with the live file (or directory) copied
    there on first use, so the step reads live content and writes only its copy; changed files are
    promoted into `base_dir` by atomic rename on reuse. A path outside `base_dir` is refused.
    """

    base_dir: str = Field(description="Live directory the assets read and write.")
    def shadow_target(self) -> tuple[str, str]:
        """Where this resource's writes land: the live folder."""
        return files_env.KIND, os.path.abspath(self.base_dir)

    def path(self, *parts: str | os.PathLike) -> Path:
        """The path to read or write for `parts` (relative to base_dir, or absolute inside it)."""
        base = os.path.abspath(self.base_dir)
        rel = files_env.relative_parts(base, parts)
        workspace = self._workspace()
        if workspace is None:
            return Path(base) / rel
        env = workspace.environment(files_env.KIND, base, lambda d: files_env.FilesEnvironment(d, base))
        return env.path(rel)
