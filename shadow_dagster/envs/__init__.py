"""Shadow environments: where resource writes of a shadow step land, and how they are promoted.

A step executing in a shadow run gets a `StepWorkspace`; shadow-aware resources route their writes
into it (a DuckDB copy, copy-on-write files, a PostgreSQL shadow schema) while their reads still
see live data. When the step finishes, the workspace lists its `Effect`s: each live object the step
changed, with a fingerprint of that object before the step and of the shadow result. A live step
with the same provenance key promotes the effects (only if every live object still has its
`before` fingerprint, so nothing live written meanwhile is overwritten) instead of running its
body. No Dagster import.
"""
