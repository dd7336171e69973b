"""Code location of the shadow-dagster example: `dagster dev -w workspace.yaml` loads `defs`.

The example pipeline lives in examples/demo/demo_project/; the shadow-dagster integration is merged
into these Definitions with `Definitions.merge(...)` (see docs/example.md).
"""

from demo_project.definitions import defs

__all__ = ["defs"]
