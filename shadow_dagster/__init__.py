"""shadow-dagster: learn how recurring Dagster workflows run and do safe work ahead of time."""

__version__ = "0.1.0"
