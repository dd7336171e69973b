"""The example code location's Definitions (without the shadow-dagster integration merged in)."""

from dagster import Definitions, FilesystemIOManager

from .assets_ingest import ASSETS as INGEST_ASSETS
from .assets_modeling import ASSETS as MODELING_ASSETS
from .chain import daily_pipeline_chain
from .jobs import JOBS
from .resources import ExampleSettings, ExternalSystem, scale_from_env


def build_definitions(scale: float | None = None) -> Definitions:
    """Assets, jobs, chain sensor and resources; the IO manager writes under <DAGSTER_HOME>/storage."""
    return Definitions(
        assets=[*INGEST_ASSETS, *MODELING_ASSETS],
        jobs=JOBS,
        sensors=[daily_pipeline_chain],
        resources={
            # base_dir unset: the instance's storage directory, i.e. <DAGSTER_HOME>/storage
            "io_manager": FilesystemIOManager(),
            "settings": ExampleSettings(scale=scale_from_env() if scale is None else scale),
            "external": ExternalSystem(),
        },
    )


defs = build_definitions()
