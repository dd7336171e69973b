"""What the speculative sensor decided per predicted step, in words (pure core)."""

from shadow_dagster.speculation.decisions import NOT_PRE_EXECUTED, PRE_EXECUTED, changed, decisions_of, latest_by_instance
from shadow_dagster.speculation.planner import Candidate, Plan, ShadowWork, prediction_id


def _work(activity, activities=None):
    return ShadowWork(prediction_id=prediction_id("k", activity, "h"), run_key="r", workflow="w", workflow_key="k",
                      activity=activity, assets=("a",), activities=activities or (activity,), probability=0.8,
                      eta_s=12.0, expected_saving_s=4.0, expected_cost_s=6.5, position=1)


def test_each_candidate_gets_its_decision_in_words():
    plan = Plan(work=[_work("j/a", ("j/a", "j/up"))],
                skipped={"j/b": "critical: never pre-executed", "j/c": "already launched",
                         "j/d": "already started by the live instance"})
    cands = [Candidate("j/a", 0.8, 12.0), Candidate("j/b", 0.15, None), Candidate("j/c", 0.05, 3.0),
             Candidate("j/d", 0.9, 0.0)]
    out = decisions_of(plan, cands, workflow="w", workflow_key="k", fingerprint_hash="h", now_ms=5000)
    assert [(d.activity, d.decision) for d in out] == [("j/a", PRE_EXECUTED), ("j/b", NOT_PRE_EXECUTED)]
    assert out[0].reason == ("launched a shadow run: expected saving 4.0 s for 6.5 s of compute; "
                             "with its producers j/up")
    assert out[1].reason == "critical: never pre-executed" and out[1].eta_s is None
    assert out[0].prediction_id == prediction_id("k", "j/a", "h") and out[0].ts_ms == 5000


def test_only_real_changes_are_stored_again():
    plan = Plan(skipped={"j/b": "policy: no launch: expected saving 0.0 s: nothing to gain"})
    first, = decisions_of(plan, [Candidate("j/b", 0.4, 10.0)], workflow="w", workflow_key="k",
                          fingerprint_hash="h", now_ms=0)
    written = {first.prediction_id: first}
    same, = decisions_of(plan, [Candidate("j/b", 0.4, 10.0)], workflow="w", workflow_key="k",
                         fingerprint_hash="h", now_ms=1000)
    assert changed([same], written) == []
    soon, = decisions_of(plan, [Candidate("j/b", 0.402, 4.0)], workflow="w", workflow_key="k",
                         fingerprint_hash="h", now_ms=6000)
    assert changed([soon], written) == []                      # only the ETA moved, 6 s later
    late, = decisions_of(plan, [Candidate("j/b", 0.402, 4.0)], workflow="w", workflow_key="k",
                         fingerprint_hash="h", now_ms=30_000)
    assert changed([late], written) == [late]                  # ...refreshed after 30 s
    likelier, = decisions_of(plan, [Candidate("j/b", 0.6, 4.0)], workflow="w", workflow_key="k",
                             fingerprint_hash="h", now_ms=6000)
    launched, = decisions_of(Plan(work=[_work("j/b")]), [Candidate("j/b", 0.4, 4.0)], workflow="w",
                             workflow_key="k", fingerprint_hash="h", now_ms=6000)
    assert changed([likelier, launched], written) == [likelier, launched]   # at once


def test_latest_instances_first_most_probable_step_first():
    def d(key, act, p, ts):
        plan = Plan(skipped={act: "critical: never pre-executed"})
        return decisions_of(plan, [Candidate(act, p, None)], workflow="w", workflow_key=key,
                            fingerprint_hash="h", now_ms=ts)[0]

    rows = [d("old", "j/a", 0.9, 1), d("new", "j/a", 0.2, 5), d("new", "j/b", 0.7, 4), d("mid", "j/a", 0.5, 3)]
    grouped = latest_by_instance(rows, instances=2)
    assert list(grouped) == ["new", "mid"]
    assert [x.activity for x in grouped["new"]] == ["j/b", "j/a"]


def test_the_store_keeps_the_latest_decision_per_prediction_until_retention(store_url):
    from dataclasses import replace

    from shadow_dagster.store.signal_store import SignalStore

    plan = Plan(skipped={"j/b": "policy: no launch: a | b"})
    first, = decisions_of(plan, [Candidate("j/b", 0.4, 10.0)], workflow="w", workflow_key="k",
                          fingerprint_hash="h", now_ms=1_000)
    other = replace(first, prediction_id="other", activity="j/c", ts_ms=2_000)
    store = SignalStore(store_url, retention_days=1)
    try:
        store.write_decisions([first, other])
        newer = replace(first, decision=PRE_EXECUTED, reason="launched", eta_s=None, ts_ms=90_000_000)
        store.write_decisions([newer])
        assert store.decisions() == [other, newer]
        assert store.decisions(since_ms=3_000) == [newer]
        store.apply_retention(now_ms=86_400_000 + 2_500)       # older than a day: `other` goes
        assert store.decisions() == [newer]
    finally:
        store.dispose()


def test_a_refit_does_not_show_a_step_twice():
    def d(act, decision_plan, h, ts):
        return decisions_of(decision_plan, [Candidate(act, 0.5, None)], workflow="w", workflow_key="k",
                            fingerprint_hash=h, now_ms=ts)[0]

    old = d("j/a", Plan(work=[_work("j/a")]), "h1", 1)
    new = d("j/a", Plan(skipped={"j/a": "critical: never pre-executed"}), "h2", 2)
    assert old.prediction_id != new.prediction_id
    assert latest_by_instance([old, new]) == {"k": [new]}
