"""One ingestion pass: read the instance's event log by storage id and store signal rows."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from dagster import DagsterInstance, RunsFilter

from shadow_dagster.errors import PerRunEventStorageError
from shadow_dagster.dagster.events import EventConverter, RunInfo, run_info_from_tags
from shadow_dagster.dagster.instance_config import EVENT_LOG_YAML
from shadow_dagster.store.signal_store import SignalStore, UnstorableText

log = logging.getLogger("shadow_dagster.ingest")
CURSOR_NAME = "event_log"

FIX_PER_RUN_STORAGE = f"""\
shadow-dagster cannot follow this instance's event log: it uses Dagster's default per-run SQLite
event storage, where step events live in one database per run and a global cursor never sees them.
Select the consolidated SQLite event storage in $DAGSTER_HOME/dagster.yaml (or use PostgreSQL):

{EVENT_LOG_YAML}"""


def check_event_storage(instance: DagsterInstance) -> None:
    """Fail with the dagster.yaml fix when the event log cannot be read with a global cursor."""
    from shadow_dagster.dagster.compat import ConsolidatedSqliteEventLogStorage, SqliteEventLogStorage

    storage = instance.event_log_storage
    if isinstance(storage, SqliteEventLogStorage) and not isinstance(storage, ConsolidatedSqliteEventLogStorage):
        raise PerRunEventStorageError(FIX_PER_RUN_STORAGE)


def run_lookup(instance: DagsterInstance, family_of=None):
    """A function mapping run ids to RunInfo: one run query per page, one per partition it touches.

    `family_of(job)` tells partitions definitions apart (see `instances.family_resolver`).
    """
    from shadow_dagster.dagster.instances import instance_keys, no_family

    def lookup(run_ids: list[str]) -> Mapping[str, RunInfo]:
        records = list(instance.get_run_records(filters=RunsFilter(run_ids=run_ids)))
        keys = instance_keys(instance, records, family_of or no_family)
        return {r.dagster_run.run_id: run_info_from_tags(r.dagster_run.run_id, r.dagster_run.job_name,
                                                        r.dagster_run.tags, keys.get(r.dagster_run.run_id))
                for r in records}

    return lookup


def committed_prefix(records: Mapping[int, object], after: int, now: float, grace_s: float) -> dict:
    """The records before the first recent gap in storage ids.

    On PostgreSQL, concurrent writers can commit id n+1 before id n; a cursor moved past n would
    never see it. A gap followed by an event younger than `grace_s` may be such a transaction
    still in flight, so the page stops there; an older gap is a rollback or a deleted run.
    """
    ids = sorted(records)
    prev = after
    for i, sid in enumerate(ids):
        if prev >= 0 and sid != prev + 1 and now - records[sid].timestamp < grace_s:
            return {k: records[k] for k in ids[:i]}
        prev = sid
    return dict(records)


@dataclass
class IngestReport:
    """What one pass did."""

    cursor_before: int
    cursor_after: int
    events: int = 0
    rows: int = 0
    pages: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    backlog_left: bool = False
    retention_deleted: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        more = " (backlog left for the next tick)" if self.backlog_left else ""
        return (
            f"ingested {self.events} events -> {self.rows} signal rows in {self.pages} pages, "
            f"skipped {len(self.skipped)} malformed, cursor {self.cursor_before} -> {self.cursor_after}{more}"
        )


def ingest(
    instance: DagsterInstance,
    store: SignalStore,
    *,
    resolution_ms: int = 1000,
    page_size: int = 2000,
    max_seconds: float = 20.0,
    max_pages: int | None = None,
    gap_grace_seconds: float = 10.0,
    converter: EventConverter | None = None,
    family_of=None,
    _after_rows=None,
) -> IngestReport:
    """Read new event log records page by page and write their signal rows.

    Each page's rows and the cursor commit in one transaction, so the cursor never moves past an
    uncommitted page; re-reading a page inserts nothing (the storage id is the primary key). The
    pass stops after `max_seconds` or `max_pages`, leaving the rest for the next tick.
    """
    check_event_storage(instance)
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    started = time.monotonic()
    converter = converter or EventConverter(resolution_ms, run_lookup(instance, family_of))
    cursor = store.get_cursor(CURSOR_NAME)
    report = IngestReport(cursor_before=cursor, cursor_after=cursor)
    while True:
        if max_pages is not None and report.pages >= max_pages:
            report.backlog_left = True
            break
        if time.monotonic() - started > max_seconds:
            report.backlog_left = True
            break
        fetched = instance.event_log_storage.get_logs_for_all_runs_by_log_id(after_cursor=cursor, limit=page_size)
        records = committed_prefix(fetched, cursor, time.time(), gap_grace_seconds)
        if not records:
            report.backlog_left = bool(fetched)
            break
        conversion = converter.convert(records)
        last = max(records)
        try:
            store.write_batch(conversion.rows, cursor=(CURSOR_NAME, last), _after_rows=_after_rows)
        except UnstorableText:
            conversion.rows, unstorable = store.split_storable(conversion.rows)
            for storage_id, reason in unstorable:
                log.warning("skipped event log record storage_id=%s: %s", storage_id, reason)
            conversion.skipped.extend(unstorable)
            store.write_batch(conversion.rows, cursor=(CURSOR_NAME, last), _after_rows=_after_rows)
        cursor = report.cursor_after = last
        report.pages += 1
        report.events += len(records)
        report.rows += len(conversion.rows)
        report.skipped.extend(conversion.skipped)
        if len(fetched) < page_size or len(records) < len(fetched):
            report.backlog_left = len(records) < len(fetched)
            break
    report.seconds = time.monotonic() - started
    return report
