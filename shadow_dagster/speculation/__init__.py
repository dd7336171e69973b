"""Speculation core: provenance keys, shadow outputs, policy and planner (pure Python, no Dagster)."""
