"""A temporary DAGSTER_HOME for a benchmark, with its environment set and restored."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


@contextlib.contextmanager
def bench_home(write_yaml: Callable[[Path], object], env_of_root: Callable[[Path], dict[str, str]],
               caches: Iterable = ()):
    """Yield (root, instance) for a fresh DAGSTER_HOME under a temporary `root`: `write_yaml(home)` writes
    its dagster.yaml, `env_of_root(root)` the environment the benchmark's processes read; `caches`
    (functools.cache functions building definitions from that environment) are cleared on entry and exit."""
    from dagster import DagsterInstance

    caches = list(caches)
    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp), Path(tmp) / "home"
        home.mkdir()
        write_yaml(home)
        env = {"DAGSTER_HOME": str(home), **env_of_root(root)}
        old_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        for cache in caches:
            cache.cache_clear()
        try:
            instance = DagsterInstance.get()
            yield root, instance
            instance.dispose()
        finally:
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            for cache in caches:
                cache.cache_clear()


def write_instance_yaml(home: str | Path, extra: str = "") -> Path:
    """Write `home/dagster.yaml` selecting the consolidated SQLite event storage (one event log
    for all runs, so a global cursor sees step events), telemetry off, plus `extra` YAML."""
    home = Path(home)
    path = home / "dagster.yaml"
    path.write_text(
        "event_log_storage:\n"
        "  module: dagster.core.storage.event_log\n"
        "  class: ConsolidatedSqliteEventLogStorage\n"
        f"  config: {{base_dir: {home / 'history'}}}\n"
        "telemetry: {enabled: false}\n" + extra
    )
    return path


def pg_test_url() -> str:
    """The PostgreSQL server the benchmarks, fault trials and tests use: $SHADOW_DAGSTER_TEST_PG_URL,
    else the one every developer and CI machine of this repository runs."""
    return os.environ.get("SHADOW_DAGSTER_TEST_PG_URL") or "postgresql://postgres@127.0.0.1:5432/test"
