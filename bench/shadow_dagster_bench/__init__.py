"""Benchmarks runnable from the installed package (`shadow-dagster bench ...`)."""
