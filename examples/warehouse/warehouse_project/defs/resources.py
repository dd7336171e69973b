"""Where the project keeps its data: a DuckDB warehouse and a folder of files.

WAREHOUSE_DATA_DIR (default: data/ beside this project) holds both.
"""

import os
from pathlib import Path

import dagster as dg

from shadow_dagster import ShadowDuckDBResource, ShadowFiles


def data_dir() -> Path:
    return Path(os.environ.get("WAREHOUSE_DATA_DIR") or Path(__file__).resolve().parents[2] / "data")


@dg.definitions
def resources():
    return dg.Definitions(resources={
        "database": ShadowDuckDBResource(database=str(data_dir() / "warehouse.duckdb")),
        "files": ShadowFiles(base_dir=str(data_dir() / "files")),
    })
