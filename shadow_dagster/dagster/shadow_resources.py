"""What the shadow-aware resources share: the executing shadow step's workspace.

Shadow-aware resources behave exactly like what they replace in live runs. In a shadow run they
write only into the executing step's workspace (`shadow_dagster.envs`) while reads still see live
data, and a live step with the same provenance key promotes what the shadow step wrote. Outside a
step workspace in a shadow run they refuse to open anything, so no code path reaches live storage.
"""

from __future__ import annotations

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from shadow_dagster.envs.workspace import current_workspace
from shadow_dagster.speculation.isolation import ShadowIsolationError
from shadow_dagster.tags import is_shadow_run


class ShadowRunAware(ConfigurableResource):
    """Base of the shadow-aware resources: `_workspace()` is the shadow step's workspace, None in live runs."""

    _shadow_run: bool = PrivateAttr(default=False)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._shadow_run = context.dagster_run is not None and is_shadow_run(context.dagster_run.tags)

    def _workspace(self):
        workspace = current_workspace()
        if workspace is None and self._shadow_run:
            raise ShadowIsolationError(f"{type(self).__name__} used in a shadow run outside a guarded step body; "
                                       "refusing to open live storage (wrap the definitions with with_shadow)")
        return workspace
