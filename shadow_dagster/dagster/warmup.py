"""Pre-allocation: resources that can be warmed up ahead of the live step that needs them.

Subclass `WarmableResource` (a `ConfigurableResource`) and override `warm_up` and `release`. The
speculative sensor calls `warm_up()` in the sensor's process (the daemon or code server), seconds
or minutes before the live run's step starts in its own process, so a warm-up must leave an effect
that outlives the process: a file or index built on disk, a service started, a warehouse resumed,
a cache filled. In-memory state set by `warm_up` is lost. `release()` undoes it when the prediction
is missed (another branch, failure, cancellation, expiry). Both must be idempotent and safe to call
when nothing was warmed; an exception is logged and recorded, never fails the sensor tick or a run.
"""

from __future__ import annotations

from dagster import ConfigurableResource


class WarmableResource(ConfigurableResource):
    """A resource with optional `warm_up()` / `release()` hooks for the speculative sensor."""

    def warm_up(self) -> None:
        """Prepare, ahead of the predicted step, what the resource would otherwise set up on first use."""

    def release(self) -> None:
        """Undo `warm_up` after a missed prediction (must tolerate nothing having been warmed)."""


def warmable_resource_keys(repository_def) -> dict[str, object]:
    """Top-level resource key -> ResourceDefinition, for resources that are WarmableResources."""
    found = {}
    for key, rdef in repository_def.get_top_level_resources().items():
        cls = getattr(rdef, "configurable_resource_cls", None)
        if isinstance(cls, type) and issubclass(cls, WarmableResource):
            found[key] = rdef
    return found


def call_hook(resource_def, key: str, hook: str, instance=None) -> None:
    """Initialise the resource as a run would (EnvVars, nested resources) and call `hook` on it."""
    from dagster import build_resources

    with build_resources({key: resource_def}, instance=instance) as resources:
        value = getattr(resources, key)
        if not isinstance(value, WarmableResource):
            raise TypeError(f"resource {key!r} did not initialise to a WarmableResource")
        getattr(value, hook)()


__all__ = ["WarmableResource", "call_hook", "warmable_resource_keys"]
