"""Dagster glue: event conversion, sensors, resources, assets, IO managers, the definitions factory."""
