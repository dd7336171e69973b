"""The benchmarks and fault trials of shadow-dagster: a development package of the repository (not
in the library's wheel) that adds `shadow-dagster bench ...` through the `shadow_dagster.cli`
entry point group."""
