"""The example code location's Definitions, with the shadow-dagster integration merged in."""

import os

from dagster import Definitions

from shadow_dagster import ShadowIOManager, with_shadow

from .assets_ingest import ASSETS as INGEST_ASSETS
from .assets_modeling import ASSETS as MODELING_ASSETS
from .chain import daily_pipeline_chain
from .jobs import JOBS
from .resources import GATE_ENV, ExampleSettings, ExternalSystem, load_seconds_from_env, scale_from_env


def build_pipeline(scale: float | None = None) -> Definitions:
    """The pipeline alone: assets, jobs, chain sensor and resources.

    Warehouse loads take $SHADOW_DAGSTER_EXAMPLE_LOAD_S seconds (0 when unset; the demo sets it)
    and wait for the file $SHADOW_DAGSTER_EXAMPLE_LOAD_GATE when it is set (tests).
    The IO manager is shadow-aware: in live runs it writes <DAGSTER_HOME>/storage exactly like
    FilesystemIOManager; in shadow runs it writes only the isolated shadow store.
    """
    return Definitions(
        assets=[*INGEST_ASSETS, *MODELING_ASSETS],
        jobs=JOBS,
        sensors=[daily_pipeline_chain],
        resources={
            "io_manager": ShadowIOManager(),
            "settings": ExampleSettings(scale=scale_from_env() if scale is None else scale),
            "external": ExternalSystem(load_s=load_seconds_from_env(), load_gate=os.environ.get(GATE_ENV, "")),
        },
    )


def build_definitions(scale: float | None = None, **shadow_options) -> Definitions:
    """The pipeline with `with_shadow(...)`, as a user's code location would be.

    Signals are sampled at 10 ms: at demo scale steps last well under a second. The speculative
    sensor looks 6 steps ahead, far enough to reach the next job of the chain while job A runs.
    Shadow runs, hits and misses, stay inspectable in the UI for the default retention period.
    """
    shadow_options.setdefault("resolution_ms", 10)
    shadow_options.setdefault("speculation", {})
    shadow_options["speculation"].setdefault("horizon", 6)
    pipeline = build_pipeline(scale)
    return with_shadow(pipeline, **shadow_options)


defs = build_definitions()
