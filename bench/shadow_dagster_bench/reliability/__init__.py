"""Reliability trials: exactly-once ingestion under faults, no stale reuse, isolation, spoofing.

Each runner returns a dict of counts (targets: 0 duplicates, losses, stale reuses, live writes,
critical steps run in shadow runs and spoofed reuses). `shadow_dagster_bench.cli_reliability` runs them.
"""
