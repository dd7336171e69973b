"""The speculation benchmark's code location, as code servers and run workers load it (the benchmark
sets the environment `bench_defs` reads)."""

from shadow_dagster_bench.speculation import bench_defs

defs = bench_defs()
