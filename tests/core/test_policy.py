"""The speculation policy: the launch inequality, caps, and calibration from observed precision."""

import math

import pytest

from shadow_dagster.speculation.policy import Outcome, PolicyConfig, PolicyState, expected_saving


def test_launch_rule_is_p_saving_against_weighted_waste():
    state = PolicyState(PolicyConfig(ratio=1.0, min_probability=0.0))
    assert state.worth_it(0.6, 10, 10)          # 6 > 4
    assert not state.worth_it(0.5, 10, 10)      # 5 > 5 is false
    assert not state.worth_it(0.4, 10, 10)
    # cheap shadow work for a large saving is worth a long shot
    assert state.worth_it(0.2, 10, 1)           # 2 > 0.8
    # a higher ratio (waste aversion) raises the bar
    assert not PolicyState(PolicyConfig(ratio=3.0, min_probability=0.0)).worth_it(0.6, 10, 10)
    assert state.threshold(10, 10) == pytest.approx(0.5)
    assert PolicyState(PolicyConfig(ratio=3.0)).threshold(10, 10) == pytest.approx(0.75)
    assert state.threshold(0, 10) == math.inf
    assert not state.worth_it(0.99, 0, 1)


def test_min_probability_floor():
    state = PolicyState(PolicyConfig(min_probability=0.3))
    assert not state.worth_it(0.29, 100, 0.01)
    assert state.worth_it(0.31, 100, 0.01)
    assert state.threshold(100, 0.01) == pytest.approx(0.3)


def test_caps_global_and_per_workflow():
    state = PolicyState(PolicyConfig(max_concurrent=3, max_per_workflow=2))
    assert state.capacity(0, 0) == 2
    assert state.capacity(2, 0) == 1
    assert state.capacity(3, 0) == 0
    assert state.capacity(1, 2) == 0
    assert state.capacity(5, 0) == 0


def test_calibration_adapts_to_precision():
    cfg = PolicyConfig(prior_strength=2.0, min_probability=0.0)
    fresh = PolicyState.from_outcomes([], cfg)
    assert fresh.calibration == 1.0 and fresh.precision is None
    # launched at p=0.8 but only 1 in 10 came true: trust p less, the threshold rises
    bad = PolicyState.from_outcomes([Outcome(i == 0, 0.8) for i in range(10)], cfg)
    assert bad.precision == pytest.approx(0.1)
    assert bad.calibration == pytest.approx((1 + 2) / (8 + 2))
    assert bad.threshold(10, 10) > fresh.threshold(10, 10)
    assert fresh.worth_it(0.8, 10, 10) and not bad.worth_it(0.8, 10, 10)
    # launched at p=0.55 and all came true: trust p more, the threshold falls
    good = PolicyState.from_outcomes([Outcome(True, 0.55)] * 20, cfg)
    assert good.calibration > 1 and good.threshold(10, 10) < 0.5
    assert good.worth_it(0.45, 10, 10) and not fresh.worth_it(0.45, 10, 10)


def test_window_keeps_only_recent_outcomes():
    cfg = PolicyConfig(window=5)
    state = PolicyState.from_outcomes([Outcome(False, 0.9)] * 50 + [Outcome(True, 0.9)] * 5, cfg)
    assert (state.hits, state.misses) == (5, 0)


def test_calibration_is_bounded():
    cfg = PolicyConfig(prior_strength=1.0, min_calibration=0.5, max_calibration=1.5)
    assert PolicyState.from_outcomes([Outcome(False, 1.0)] * 100, cfg).calibration == 0.5
    assert PolicyState.from_outcomes([Outcome(True, 0.01)] * 100, cfg).calibration == 1.5


def test_expected_saving_needs_time_to_finish():
    assert expected_saving(10, None) == 10
    assert expected_saving(10, 30) == 10
    # a shadow run that would finish after the live run reaches the step saves nothing
    assert expected_saving(10, 5) == 0
    assert expected_saving(10, 10) == 0
    assert expected_saving(10, 12, launch_overhead_s=2) == 0
    assert expected_saving(10, 1, launch_overhead_s=2) == 0
    # with the margin covered, the whole step is saved; in between, linearly
    assert expected_saving(10, 14.5, launch_overhead_s=2) == 10
    assert expected_saving(10, 12.5) == 10
    assert expected_saving(10, 11.25) == pytest.approx(5)
    assert expected_saving(10, 10.5, margin=0) == 10
    assert expected_saving(0, 0) == 0
    with pytest.raises(ValueError, match="margin"):
        expected_saving(10, 20, margin=-1)


def test_policy_rejects_a_bad_deadline_margin():
    with pytest.raises(ValueError, match="deadline_margin"):
        PolicyConfig(deadline_margin=float("nan"))


@pytest.mark.parametrize("kwargs", [dict(ratio=0), dict(ratio=-1), dict(max_concurrent=-1),
                                    dict(max_per_workflow=1.5), dict(min_probability=2),
                                    dict(window=0), dict(ratio=float("nan")),
                                    dict(min_calibration=2.0), dict(max_calibration=0.5)])
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        PolicyConfig(**kwargs)


def test_bad_inputs_are_refused():
    state = PolicyState()
    with pytest.raises(ValueError, match="probability"):
        state.worth_it(1.5, 1, 1)
    with pytest.raises(ValueError, match="saving_s"):
        state.worth_it(0.5, -1, 1)
    with pytest.raises(ValueError):
        Outcome(True, -0.1)
    with pytest.raises(TypeError):
        PolicyState.from_outcomes([(True, 0.5)])


def test_launch_estimate_learns_the_observed_latency():
    from shadow_dagster.speculation.policy import update_launch_estimate

    assert update_launch_estimate(None, []) is None
    assert update_launch_estimate(2.0, []) == 2.0
    assert update_launch_estimate(None, [3.0, 1.0, 2.0]) == 3.0              # the upper (p90) sample
    assert update_launch_estimate(None, [float(x) for x in range(1, 11)]) == 9.0
    assert update_launch_estimate(None, [float(x) for x in range(1, 11)], q=0.5) == 5.0
    assert update_launch_estimate(None, [1.0, 3.0]) == 3.0
    assert update_launch_estimate(2.0, [4.0]) == pytest.approx(3.0)          # blended with the prior
    assert update_launch_estimate(2.0, [-5.0, float("nan"), float("inf")]) == 2.0   # skew and junk ignored
    with pytest.raises(ValueError, match="q must lie"):
        update_launch_estimate(None, [1.0], q=2)


def test_a_refusal_for_no_saving_says_why_no_launch_is_worth_it():
    """Nothing to save: the reason says in words that no cost can be worth it, never 'threshold inf'."""
    state = PolicyState(PolicyConfig(min_probability=0.0))
    assert state.threshold(0.0, 3.0) == math.inf            # the number behind the words
    reason = state.refusal(0.9, 0.0, 3.0)
    assert reason.startswith("expected saving 0.0 s") and "no launch is worth it" in reason
    assert "any cost exceeds that saving" in reason and "3.0 s" in reason
    assert "inf" not in reason and "threshold" not in reason
    assert state.refusal(0.9, 10.0, 1.0) is None             # worth it: no reason
