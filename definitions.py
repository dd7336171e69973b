"""Code location of the shadow-dagster example: `dagster dev -w workspace.yaml` loads `defs`.

The example pipeline lives in shadow_dagster/example/; the shadow-dagster integration is merged
into these Definitions with `Definitions.merge(...)` (see docs/example.md).
"""

from shadow_dagster.example.definitions import defs

__all__ = ["defs"]
