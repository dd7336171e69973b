"""The instance configuration shadow-dagster needs on the embedded SQLite storage."""

# The one instruction for the embedded SQLite storage, word for word the same in the README, in the
# repository's dagster.yaml and in the error the signal sensor and `shadow-dagster ingest` raise on
# Dagster's per-run storage: one consolidated event log at $DAGSTER_HOME/event_log.db. Dagster
# expands `env: DAGSTER_HOME` when it loads the file, so every process (dagster dev, the daemon, the
# CLI) finds the same log whatever its working directory; a relative base_dir would not.
EVENT_LOG_YAML = """\
event_log_storage:
  module: dagster.core.storage.event_log
  class: ConsolidatedSqliteEventLogStorage
  config:
    base_dir:
      env: DAGSTER_HOME
"""
