"""The speculative sensor's typed cursor reads what earlier versions stored and survives corruption."""

import json
import math

from shadow_dagster.speculation.cursor import TickCursor

STORED = json.dumps({"launched": {"p1": 100.0}, "predicted": {"p1": 100.0, "p2": 50.0}, "tick": [100.0, 0.5],
                     "launch_s": 3.25, "report": [90.0, False]}, sort_keys=True)


def test_a_stored_cursor_reads_back_and_is_written_in_the_same_layout():
    cur = TickCursor.parse(STORED)
    assert (cur.launched, cur.tick, cur.launch_s, cur.report_at, cur.report_dirty) == (
        {"p1": 100.0}, (100.0, 0.5), 3.25, 90.0, False)
    assert cur.dumps() == STORED
    cur.forget_before(75.0)
    assert cur.predicted == {"p1": 100.0} and cur.launched == {"p1": 100.0}


def test_a_missing_or_corrupt_cursor_is_a_new_one_that_reports_at_once():
    for raw in (None, "", "{", "[1, 2]", json.dumps({"tick": "x", "report": [True]}), json.dumps({"launched": 3})):
        cur = TickCursor.parse(raw)
        assert cur.launched == {} and cur.tick is None and cur.report_dirty is True, raw
        assert cur.report_due(1000.0, 60.0)
    assert TickCursor.parse(json.dumps({"launch_s": True})).launch_s is None


def test_the_report_is_due_when_dirty_and_old_enough_and_a_bad_time_never_blocks_it():
    assert not TickCursor(report_at=990.0).report_due(1000.0, 60.0)
    assert TickCursor(report_at=940.0).report_due(1000.0, 60.0)
    assert not TickCursor(report_at=940.0, report_dirty=False).report_due(1000.0, 60.0)
    assert not TickCursor().report_due(1000.0, None)
    for bad in (math.nan, math.inf, 5000.0):
        assert TickCursor(report_at=bad).report_due(1000.0, 60.0)
