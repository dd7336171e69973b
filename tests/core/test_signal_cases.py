"""Signals -> cases: attempts, chains under one workflow key, attributes."""

from shadow_dagster.signals.cases import activity_label, case_attrs, cases_from_signals
from shadow_dagster.signals.model import Signal


def sig(run, step, tsa, transitions, job="a", wf="w1", tags=None):
    return Signal(kind="step" if step else "run", run_id=run, step_key=step, job_name=job, workflow_key=wf,
                  tsa=tsa, transitions=transitions, state=1 if transitions[-1] in ("start", "restart") else 0,
                  tags=tags)


def test_chain_of_two_jobs_is_one_case_with_one_event_per_attempt():
    signals = [
        sig("r1", None, [0, 10_000], ["start", "success"], tags={"dagster/partition": "2026-11-21"}),
        sig("r1", "x", [1000, 2000, 3000, 4000], ["start", "retry", "restart", "success"]),
        sig("r1", "y", [5000], ["skipped"]),
        sig("r2", None, [20_000, 30_000], ["start", "success"], job="b"),
        sig("r2", "z", [21_000], ["start"], job="b"),
        sig("r3", None, [0, 1], ["start", "success"], wf="other"),
    ]
    cases = cases_from_signals(signals)
    assert [c.case_id for c in cases] == ["w1"]  # r3 has no steps: no case
    case = cases[0]
    assert case.workflow == "a"
    assert [(e.activity, e.status, e.start, e.end) for e in case.events] == [
        ("a/x", "failure", 1.0, 2.0),
        ("a/x", "success", 3.0, 4.0),
        ("a/y", "skipped", 5.0, 5.0),
        ("b/z", "running", 21.0, None),
    ]
    assert case.attrs == {"backfill": "no", "trigger": "manual", "day": "weekend"}  # 2026-11-21 is a Saturday
    assert [e.activity for e in cases_from_signals(signals, executed_only=True)[0].events] == ["a/x", "a/x", "b/z"]


def test_case_attrs_read_backfill_and_trigger_tags():
    attrs = case_attrs({"dagster/backfill": "abc", "dagster/schedule_name": "daily"}, 1795610454.0)
    assert attrs == {"backfill": "yes", "trigger": "schedule", "day": "weekday"}
    assert activity_label("job", "op.nested") == "job/op.nested"


def test_runs_starting_in_the_same_tick_keep_storage_order():
    # at 1 s resolution a fast chain's two runs can share a start tick: job a was stored first
    for _ in range(20):  # set iteration order used to decide this at random
        signals = [
            sig("r1", None, [1000, 1000], ["start", "success"], job="a"),
            sig("r1", "x", [1000, 1000], ["start", "success"], job="a"),
            sig("r2", None, [1000], ["start"], job="b"),
            sig("r2", "z", [1000], ["start"], job="b"),
        ]
        (case,) = cases_from_signals(signals)
        assert case.workflow == "a" and case.activities == ["a/x", "b/z"]


def test_runs_shadow_dagster_made_itself_belong_to_no_case():
    """Shadow runs and the refit and report runs are not workflows to learn, even sharing a key."""
    signals = [
        sig("live", None, [0, 9000], ["start", "success"]),
        sig("live", "x", [1000, 2000], ["start", "success"]),
        sig("shadow", None, [500, 3000], ["start", "success"], job="__shadow_dagster_runner",
            tags={"shadow_dagster/shadow": "true"}),
        sig("shadow", "y", [600, 2500], ["start", "success"], job="__shadow_dagster_runner"),
        sig("refit", None, [4000, 8000], ["start", "success"], job="shadow_dagster_refit", wf="refit",
            tags={"shadow_dagster/own": "true", "dagster/priority": "-10"}),
        sig("refit", "fit", [4100, 7000], ["start", "success"], job="shadow_dagster_refit", wf="refit"),
    ]
    (case,) = cases_from_signals(signals)
    assert case.workflow == "a" and case.activities == ["a/x"]
    assert [c.workflow for c in cases_from_signals(signals[2:])] == []
