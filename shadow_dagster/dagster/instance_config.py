"""The instance configuration shadow-dagster needs on the embedded SQLite storage."""

from __future__ import annotations

from pathlib import Path


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
