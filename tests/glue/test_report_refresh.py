"""The speculative sensor logs `speculation_report` itself: only when something changed, at most
once per interval, only where the report is defined, and never at the cost of a tick."""

import logging

import pytest
from dagster import AssetSpec, Definitions

from shadow_dagster.dagster.speculation_report import REPORT_KEY
from shadow_dagster.dagster.speculative_tick import report_events
from shadow_dagster.speculation.cursor import TickCursor
from shadow_dagster.store.signal_store import SignalStore

LOG = logging.getLogger("test")


@pytest.fixture
def signals(tmp_path):
    store = SignalStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    store.dispose()


def _events(cursor, now, instance, signals, *, interval=60.0, defined=True):
    repo = Definitions(assets=[AssetSpec(REPORT_KEY if defined else "other")]).get_repository_def()
    return report_events(cursor, now, interval, repo, instance, signals, None, 30.0, LOG)


def test_logged_when_dirty_then_not_again_within_the_interval(instance, signals):
    cursor = TickCursor()
    (event,) = _events(cursor, 1000.0, instance, signals)
    assert event.asset_key == REPORT_KEY and "live_instances" in event.metadata
    assert (cursor.report_at, cursor.report_dirty) == (1000.0, False)
    assert _events(cursor, 1001.0, instance, signals) == []          # clean
    cursor.report_dirty = True
    assert _events(cursor, 1059.0, instance, signals) == []          # dirty, but too soon
    assert len(_events(cursor, 1060.0, instance, signals)) == 1
    assert _events(TickCursor(), 1000.0, instance, signals, interval=None) == []   # off


def test_never_for_an_undefined_report_and_a_bad_time_does_not_stop_it(instance, signals):
    assert _events(TickCursor(), 1000.0, instance, signals, defined=False) == []
    for bad in (float("nan"), float("inf"), 5000.0):                   # corrupt, or in the future
        assert len(_events(TickCursor(report_at=bad), 1000.0, instance, signals)) == 1


def test_a_report_that_fails_to_build_is_a_warning_not_a_failed_tick(instance, caplog):
    broken = type("Broken", (), {"engine": None})()   # a store whose reads fail
    cursor = TickCursor()
    with caplog.at_level(logging.WARNING):
        assert _events(cursor, 1000.0, instance, broken) == []
    assert (cursor.report_at, cursor.report_dirty) == (None, True) and "speculation_report not logged" in caplog.text
