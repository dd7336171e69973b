"""The code location: the project's autoloaded definitions, integrated as README.md says."""

import dagster as dg

import warehouse_project.defs
from shadow_dagster import with_shadow


@dg.definitions
def defs():
    return with_shadow(dg.load_defs(warehouse_project.defs))
