"""Pure signal model: quantisation, validation, assembly (no Dagster)."""

import math

import pytest

from shadow_dagster.signals import SignalRow, quantise_ms, validate_intensity, validate_resolution_ms
from shadow_dagster.signals.assemble import assemble


def row(eid, ts, step, transition, state, run="r1", **kw):
    base = dict(
        event_id=eid, ts_ms=ts, kind="step" if step else "run", run_id=run, job_name="j", step_key=step,
        partition_key=None, workflow_key="w", transition=transition, state=state, intensity=None,
        duration_ms=None, output_bytes=None, tags=None,
    )
    base.update(kw)
    return SignalRow(**base)


def test_quantise_floors_to_resolution():
    assert quantise_ms(1.2345, 1) == 1234
    assert quantise_ms(1.2345, 1000) == 1000
    assert quantise_ms(119.999, 60_000) == 60_000


@pytest.mark.parametrize("bad", [0, -5, 60_001, 1.5, "10", True, None])
def test_resolution_out_of_range_is_rejected(bad):
    with pytest.raises(ValueError, match="resolution"):
        validate_resolution_ms(bad)


@pytest.mark.parametrize("bad", [math.nan, -0.01, 1.01, math.inf, "abc", None, True])
def test_intensity_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match="intensity"):
        validate_intensity(bad)


def test_transitions_in_one_tick_are_all_kept_in_order():
    rows = [
        row(1, 1000, None, "start", 1),
        row(2, 1000, "a", "start", 1),
        row(3, 1000, "a", "retry", 0),
        row(4, 1000, "a", "restart", 1),
        row(5, 1000, "a", "success", 0, duration_ms=3),
        row(6, 1000, None, "success", 0),
    ]
    sigs = {s.step_key: s for s in assemble(rows)}
    assert sigs["a"].tsa == [1000, 1000, 1000, 1000]
    assert sigs["a"].transitions == ["start", "retry", "restart", "success"]
    assert sigs["a"].state == 0 and sigs["a"].status == "success" and sigs["a"].duration_ms == 3
    assert sigs[None].transitions == ["start", "success"]


def test_open_steps_close_when_the_run_is_cancelled_and_intensity_is_derived():
    rows = [
        row(1, 0, None, "start", 1),
        row(2, 10, "a", "start", 1),
        row(3, 20, "a", "output", 1, output_bytes=100),
        row(4, 30, "a", "success", 0),
        row(5, 40, "b", "start", 1),
        row(6, 45, "b", "intensity", 1, intensity=0.25),
        row(7, 50, "c", "start", 1),
        row(8, 60, None, "canceled", 0),
    ]
    sigs = {s.step_key: s for s in assemble(rows)}
    assert sigs["b"].transitions == ["start", "canceled"] and sigs["b"].tsa == [40, 60]
    assert sigs["b"].intensity == 0.25  # reported value kept
    assert sigs["c"].intensity == 0.0 and sigs["c"].duration_ms == 10
    assert sigs["a"].intensity == 1.0 and sigs["a"].output_bytes == 100 and sigs["a"].outputs == 1
    assert sigs[None].intensity == pytest.approx((1.0 + 0.25 + 0.0) / 3)
