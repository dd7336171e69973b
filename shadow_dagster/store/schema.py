"""The signal store's tables (SQLAlchemy Core): one time-series table plus cursor and metadata."""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = 1
metadata = sa.MetaData()

# One row per signal transition or observation. The primary key (event_id, ts_ms) makes ingestion
# exactly-once (event_id is the event log's storage id) and includes the time column, as a
# TimescaleDB hypertable requires of every unique index.
signals = sa.Table(
    "shadow_signals",
    metadata,
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("job_name", sa.Text),
    sa.Column("step_key", sa.Text),
    sa.Column("partition_key", sa.Text),
    sa.Column("workflow_key", sa.Text),
    sa.Column("transition", sa.String(16), nullable=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("intensity", sa.Float),
    sa.Column("duration_ms", sa.BigInteger),
    sa.Column("output_bytes", sa.BigInteger),
    sa.Column("tags", sa.Text),
    sa.PrimaryKeyConstraint("event_id", "ts_ms", name="shadow_signals_pk"),
    sa.Index("ix_shadow_signals_ts", "ts_ms"),
    sa.Index("ix_shadow_signals_run_step", "run_id", "step_key", "ts_ms"),
    sa.Index("ix_shadow_signals_job_ts", "job_name", "ts_ms"),
    sa.Index("ix_shadow_signals_workflow_ts", "workflow_key", "ts_ms"),
)

COLUMNS = [c.name for c in signals.columns]

cursors = sa.Table(
    "shadow_cursors",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

meta = sa.Table(
    "shadow_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# The latest decision of the speculative sensor per prediction (see shadow_dagster.speculation.decisions).
decisions = sa.Table(
    "shadow_decisions",
    metadata,
    sa.Column("prediction_id", sa.String(64), primary_key=True),
    sa.Column("workflow", sa.Text, nullable=False),
    sa.Column("workflow_key", sa.Text, nullable=False),
    sa.Column("activity", sa.Text, nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("eta_s", sa.Float),
    sa.Column("decision", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_shadow_decisions_ts", "ts_ms"),
)
