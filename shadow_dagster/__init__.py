"""shadow-dagster: learn how recurring Dagster workflows run and do safe work ahead of time.

The pure core (signals, graph, fingerprint, speculation) imports no Dagster; the Dagster-facing
names below load lazily so that importing the core stays light.
"""

__version__ = "0.1.0"

_LAZY = {
    "shadow_definitions": "shadow_dagster.dagster.definitions",
    "with_shadow": "shadow_dagster.dagster.definitions",
    "guard_assets": "shadow_dagster.dagster.critical",
    "shadow_reusable": "shadow_dagster.dagster.reuse",
    "ShadowIOManager": "shadow_dagster.dagster.io_manager",
    "ShadowDuckDBResource": "shadow_dagster.dagster.shadow_duckdb",
    "ShadowFiles": "shadow_dagster.dagster.shadow_files",
    "ShadowPostgresResource": "shadow_dagster.dagster.shadow_postgres",
    "report_intensity": "shadow_dagster.dagster.intensity",
    "SignalStoreResource": "shadow_dagster.dagster.resources",
    "SpeculationConfig": "shadow_dagster.speculation.config",
    "PrepareConfig": "shadow_dagster.speculation.config",
    "PolicyConfig": "shadow_dagster.speculation.policy",
    "ShadowStorage": "shadow_dagster.store.layout",
    "ShadowDagsterError": "shadow_dagster.errors",
    "WarmableResource": "shadow_dagster.dagster.warmup",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'shadow_dagster' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
