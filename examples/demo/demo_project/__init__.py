"""A realistic recurring pipeline (daily orders -> warehouse, features -> model -> published forecast
-> digest) used to demonstrate shadow-dagster. `defs` is its Definitions."""
