"""The settle rule rollback and preparation share: when a live instance will not take predicted work."""

from shadow_dagster.speculation.settle import abandoned, expired

KW = dict(start=1, position=2, activity="j/c", failed=None, ended_at=None, now=1000.0, chain_gap_s=60.0,
          divergence_slack=1)


def test_an_instance_still_on_its_way_keeps_the_prediction():
    assert abandoned(["j/a", "j/b"], **KW) is None
    assert abandoned(["j/a", "j/b", "j/x"], **KW) is None           # within the slack: parallel steps
    assert abandoned(["j/a"], **{**KW, "ended_at": 960.0}) is None  # ended, but the chain may go on


def test_failure_another_branch_and_an_ended_chain_abandon_it_in_that_order():
    assert abandoned(["j/a", "j/x", "j/y", "j/z"], **{**KW, "failed": "live run r1 failure"}) == "live run r1 failure"
    assert abandoned(["j/a", "j/x", "j/y", "j/z"], **KW) == "live instance took another branch (j/x, j/y, j/z)"
    assert abandoned(["j/a"], **{**KW, "ended_at": 900.0}) == "live instance ended without j/c"


def test_a_prediction_expires_after_its_ttl_only():
    assert expired(100.0, 150.0, 60.0) is None
    assert expired(100.0, 160.0, 60.0) is None
    assert expired(100.0, 160.5, 60.0) == "prediction expired after 60s"
