"""The planner: only non-critical asset steps whose inputs exist (or are produced in the same run)."""

import pytest

from shadow_dagster.speculation.planner import (
    Candidate, StepInfo, expand, plan, prediction_id,
)
from shadow_dagster.speculation.policy import PolicyConfig, PolicyState

CATALOG = {
    "etl/extract": StepInfo(("raw",), critical=True, duration_s=5),
    "etl/publish": StepInfo(("published",), critical=True, deps=("raw",), duration_s=5),
    "etl/clean": StepInfo(("clean",), critical=False, deps=("raw",), duration_s=4),
    "etl/features": StepInfo(("features",), critical=False, deps=("clean",), duration_s=3),
    "etl/report": StepInfo(("report",), critical=False, deps=("published",), duration_s=2),
    "etl/model": StepInfo(("model",), critical=False, deps=("raw", "ext"), duration_s=6, partitioned=True),
}
POLICY = PolicyState(PolicyConfig(min_probability=0.0, max_concurrent=10, max_per_workflow=10,
                                  max_launches_per_tick=None))


def run_plan(cands, available=("raw",), policy=POLICY, **kw):
    return plan(workflow="etl", workflow_key="day-1", fingerprint_hash="fp1", candidates=cands,
                catalog=CATALOG, available=available, policy=policy, **kw)


def test_critical_steps_are_never_planned():
    p = run_plan([Candidate("etl/publish", 0.99, 100)])
    assert p.work == [] and "critical" in p.skipped["etl/publish"]


def test_inputs_must_exist_or_be_produced_in_the_same_run():
    p = run_plan([Candidate("etl/clean", 0.9, 100), Candidate("etl/features", 0.9, 100),
                  Candidate("etl/report", 0.9, 100)])
    by = {w.activity: w for w in p.work}
    assert by["etl/clean"].assets == ("clean",)
    # features needs clean, which the same shadow run produces (non-critical)
    assert by["etl/features"].assets == ("features", "clean")
    assert by["etl/features"].activities == ("etl/features", "etl/clean")
    assert by["etl/features"].expected_cost_s == 7
    # report needs published, made only by a critical step that has not run
    assert "etl/report" not in by and "critical" in p.skipped["etl/report"]
    # once published exists, report is plannable on its own
    p2 = run_plan([Candidate("etl/report", 0.9, 100)], available=("raw", "published"))
    assert [w.assets for w in p2.work] == [("report",)]


def test_a_refused_step_is_skipped_with_its_reason_and_blocks_its_consumers():
    why = "needs resource(s) 'files' that are not shadow-safe"
    catalog = {**CATALOG, "etl/clean": StepInfo(("clean",), critical=False, deps=("raw",), duration_s=4,
                                               refusal=why)}
    p = plan(workflow="etl", workflow_key="day-1", fingerprint_hash="fp1", catalog=catalog, available=("raw",),
             candidates=[Candidate("etl/clean", 0.9, 100), Candidate("etl/features", 0.9, 100)], policy=POLICY)
    assert p.work == [] and p.skipped["etl/clean"] == why
    assert why in p.skipped["etl/features"]            # its producer cannot run in the shadow run either


def test_producers_the_live_run_makes_are_never_re_run_in_a_shadow_run():
    """features needs clean. While the live instance runs its etl job (clean not yet made), a
    shadow run would re-run clean: the planner waits instead, and plans features alone once clean
    exists. A producer of a job the instance is not running may still be included; an asset that
    another job also makes is still the in-flight run's."""
    cands = [Candidate("etl/features", 0.9, 100)]
    p = run_plan(cands, live_jobs={"etl"})
    assert p.work == [] and p.skipped["etl/features"] == \
        "input clean is the live etl run's to make (in flight): waiting for it"
    both = {"backfill/clean": StepInfo(("clean",), critical=False, deps=("raw",), duration_s=4), **CATALOG}
    p = plan(workflow="etl", workflow_key="day-1", fingerprint_hash="fp1", candidates=cands, catalog=both,
             available=("raw",), policy=POLICY, live_jobs={"etl"})
    assert p.work == [] and "waiting for it" in p.skipped["etl/features"]
    # a started step of a finished run that never made its asset does not block for ever
    p = run_plan(cands, done={"etl/extract", "etl/clean"})
    assert [w.activities for w in p.work] == [("etl/features", "etl/clean")]
    p = run_plan(cands, available=("raw", "clean"), live_jobs={"etl"})
    assert [w.activities for w in p.work] == [("etl/features",)]
    p = run_plan(cands, live_jobs={"other"})
    assert [w.activities for w in p.work] == [("etl/features", "etl/clean")]
    # a step of the job in flight is itself still plannable: the live run reaches it later
    p = run_plan([Candidate("etl/clean", 0.9, 100)], live_jobs={"etl"})
    assert [w.activities for w in p.work] == [("etl/clean",)]


def test_missing_external_input_blocks():
    p = run_plan([Candidate("etl/model", 0.9, 100)])
    assert p.work == [] and "ext" in p.skipped["etl/model"]
    p = run_plan([Candidate("etl/model", 0.9, 100)], available=("raw", "ext"), partition_key="2024-01-01")
    assert p.work[0].partition_key == "2024-01-01"
    p = run_plan([Candidate("etl/clean", 0.9, 100)], partition_key="2024-01-01")
    assert p.work[0].partition_key is None     # unpartitioned assets get no partition


def test_ids_are_deterministic_and_depend_on_fingerprint():
    a = run_plan([Candidate("etl/clean", 0.9, 100)]).work[0]
    b = run_plan([Candidate("etl/clean", 0.7, 50)]).work[0]
    assert a.prediction_id == b.prediction_id == prediction_id("day-1", "etl/clean", "fp1")
    assert a.run_key == "shadow-" + a.prediction_id
    assert prediction_id("day-1", "etl/clean", "fp2") != a.prediction_id
    assert prediction_id("day-2", "etl/clean", "fp1") != a.prediction_id
    with pytest.raises(ValueError):
        prediction_id("", "etl/clean", "fp1")


def test_done_existing_and_launched_are_skipped():
    pid = prediction_id("day-1", "etl/clean", "fp1")
    assert run_plan([Candidate("etl/clean", 0.9, 100)], already_launched=[pid]).work == []
    assert run_plan([Candidate("etl/clean", 0.9, 100)], done=["etl/clean"]).work == []
    assert run_plan([Candidate("etl/clean", 0.9, 100)], available=("raw", "clean")).work == []
    assert "not an asset step" in run_plan([Candidate("etl/op_only", 0.9, 100)]).skipped["etl/op_only"]


def test_policy_and_caps_choose_best_value_first():
    strict = PolicyState(PolicyConfig(ratio=1.0, min_probability=0.0, max_concurrent=1, max_per_workflow=5))
    p = run_plan([Candidate("etl/clean", 0.4, 100), Candidate("etl/features", 0.95, 100),
                  Candidate("etl/model", 0.8, 100)], available=("raw", "ext"), policy=strict)
    assert "policy" in p.skipped["etl/clean"]     # 0.4*4 < 0.6*4
    assert [w.activity for w in p.work] == ["etl/model"]   # higher net value than features
    assert "cap" in p.skipped["etl/features"]
    assert run_plan([Candidate("etl/model", 0.8, 100)], available=("raw", "ext"), policy=strict,
                    in_flight_total=1).work == []
    # no time to finish before the live run needs it: no saving, no launch
    p = run_plan([Candidate("etl/clean", 0.99, 0.0)], launch_overhead_s=1.0)
    assert p.work == [] and "policy" in p.skipped["etl/clean"]


def test_a_shadow_run_that_would_finish_late_is_not_launched():
    # clean takes 4 s; launching costs 1 s: with 4.5 s to go it would land after the live run
    # started the step (the live run never waits), so a near-certain guess still saves nothing
    late = run_plan([Candidate("etl/clean", 0.99, 4.5)], launch_overhead_s=1.0)
    assert late.work == [] and "expected saving 0.0 s" in late.skipped["etl/clean"]
    # with the deadline margin (25 % of 4 s) to spare it is launched, saving the whole step
    fits = run_plan([Candidate("etl/clean", 0.99, 6.0)], launch_overhead_s=1.0).work
    assert [w.expected_saving_s for w in fits] == [4.0]
    # a producer added to the run must finish first: features (3 s) needs clean (4 s) before it
    assert run_plan([Candidate("etl/features", 0.99, 7.0)]).work == []
    assert run_plan([Candidate("etl/features", 0.99, 7.75)]).work[0].activities == ("etl/features", "etl/clean")
    # the margin is the policy's: with none, just fitting is enough
    exact = PolicyState(PolicyConfig(min_probability=0.0, max_concurrent=10, max_per_workflow=10, deadline_margin=0))
    assert run_plan([Candidate("etl/clean", 0.99, 5.1)], launch_overhead_s=1.0, policy=exact).work


def test_launches_per_tick_are_capped_when_asked():
    capped = PolicyState(PolicyConfig(min_probability=0.0, max_concurrent=10, max_per_workflow=10,
                                      max_launches_per_tick=1))
    cands = [Candidate("etl/clean", 0.9, 100), Candidate("etl/model", 0.9, 100)]
    p = run_plan(cands, available=("raw", "ext"), policy=capped)
    assert [w.activity for w in p.work] == ["etl/model"]          # the better one goes first
    assert p.skipped["etl/clean"] == "cap on launches per tick reached"
    assert run_plan(cands, available=("raw", "ext"), policy=capped, launches_this_tick=1).work == []
    assert len(run_plan(cands, available=("raw", "ext")).work) == 2   # None: no cap
    with pytest.raises(ValueError, match="max_launches_per_tick"):
        PolicyConfig(max_launches_per_tick=0)
    with pytest.raises(ValueError, match="max_launches_per_tick"):
        PolicyConfig(max_launches_per_tick="sometimes")


def test_auto_launch_cap_is_one_on_the_live_host_and_none_elsewhere():
    auto = PolicyConfig(min_probability=0.0, max_concurrent=10, max_per_workflow=10)
    assert auto.max_launches_per_tick == "auto" and auto.launch_cap == 1      # unresolved: cautious
    assert auto.resolve_launch_cap(runs_on_live_host=True).max_launches_per_tick == 1
    assert auto.resolve_launch_cap(runs_on_live_host=False).max_launches_per_tick is None
    fixed = PolicyConfig(max_launches_per_tick=3)
    assert fixed.resolve_launch_cap(runs_on_live_host=True) is fixed           # an explicit cap stays
    cands = [Candidate("etl/clean", 0.9, 100), Candidate("etl/model", 0.9, 100)]
    remote = PolicyState(auto.resolve_launch_cap(runs_on_live_host=False))
    assert len(run_plan(cands, available=("raw", "ext"), policy=PolicyState(auto)).work) == 1
    assert len(run_plan(cands, available=("raw", "ext"), policy=remote).work) == 2


def test_position_follows_depth():
    w = run_plan([Candidate("etl/clean", 0.9, 100, depth=2)], prefix_length=3).work[0]
    assert w.position == 4


def test_expand_rolls_the_predictor_forward():
    table = {
        (): [("a", 1.0, 1.0)],
        ("a",): [("b", 0.8, 2.0), ("c", 0.2, 2.0)],
        ("a", "b"): [("d", 0.9, 3.0), ("e", 0.1, 3.0)],
        ("a", "c"): [("e", 1.0, 1.0)],
    }
    cands = expand(lambda prefix: table.get(tuple(prefix), []), ["a"], horizon=2, min_probability=0.1)
    by = {c.activity: c for c in cands}
    assert by["b"].probability == pytest.approx(0.8) and by["b"].depth == 1
    assert by["d"].probability == pytest.approx(0.72) and by["d"].eta_s == pytest.approx(5.0)
    assert by["e"].probability == pytest.approx(0.2) and by["e"].depth == 2   # likeliest path kept
    assert "a" not in by
    assert [c.activity for c in cands][:2] == ["b", "d"]
    assert "d" not in {c.activity for c in expand(lambda p: table.get(tuple(p), []), ["a"], horizon=1)}
    with pytest.raises(ValueError):
        expand(lambda p: [], ["a"], horizon=0)


def test_planner_has_no_dagster_import():
    import subprocess
    import sys

    code = ("import sys, shadow_dagster.speculation.planner, shadow_dagster.speculation.policy; "
            "print('dagster' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_expand_sums_the_paths_through_either_branch_of_a_fork():
    from shadow_dagster.speculation.planner import expand

    table = {("a",): [("b", 0.5, 1.0), ("c", 0.5, 3.0)], ("a", "b"): [("d", 1.0, 1.0)],
             ("a", "c"): [("d", 1.0, 1.0)]}
    found = {c.activity: c for c in expand(lambda path: table.get(tuple(path), []), ["a"], horizon=2)}
    assert found["d"].probability == 1.0 and found["d"].depth == 2
    assert found["d"].eta_s == 0.5 * 2.0 + 0.5 * 4.0   # weighted by the branch taken
    assert found["b"].probability == 0.5 and found["c"].eta_s == 3.0


def test_policy_refusals_say_in_words_why_with_the_numbers():
    import re

    def numbers(text):
        return set(re.findall(r"\d+\.\d+", text))

    # too late: the reason names the ETA and what a shadow run needs (launch + compute)
    late = run_plan([Candidate("etl/clean", 0.99, 4.5)], launch_overhead_s=1.0).skipped["etl/clean"]
    assert late.startswith("policy: no launch") and "expected saving 0.0 s" in late
    assert {"4.5", "1.0", "4.0", "5.0"} <= numbers(late) and "launch" in late and "compute" in late
    # a producer in the same run is part of what must finish first
    prod = run_plan([Candidate("etl/features", 0.99, 7.0)]).skipped["etl/features"]
    assert "producers 4.0 s" in prod and "compute 3.0 s" in prod and "7.0" in prod
    # the live run is due any moment
    now = run_plan([Candidate("etl/clean", 0.99, 0.0)], launch_overhead_s=1.0).skipped["etl/clean"]
    assert "any moment" in now and "expected saving 0.0 s" in now
    # not worth it: both sides of p' x S > (1 - p') x C x ratio, with their values
    strict = PolicyState(PolicyConfig(ratio=2.0, min_probability=0.0, max_concurrent=5, max_per_workflow=5))
    value = run_plan([Candidate("etl/clean", 0.6, 100)], policy=strict).skipped["etl/clean"]
    assert "probability 0.60" in value and "saving 4.0 s" in value and "cost 4.0 s" in value
    assert "ratio 2" in value and {"2.40", "3.20"} <= numbers(value)      # 0.6 x 4 vs 0.4 x 4 x 2
    # below the minimum probability
    low = PolicyState(PolicyConfig(min_probability=0.5, max_concurrent=5, max_per_workflow=5))
    below = run_plan([Candidate("etl/clean", 0.3, 100)], policy=low).skipped["etl/clean"]
    assert "probability 0.30" in below and "minimum 0.50" in below
    # a step that took no time in its history: nothing to save, whatever the ETA
    instant = {**CATALOG, "etl/clean": StepInfo(("clean",), critical=False, deps=("raw",), duration_s=0.0)}
    zero = plan(workflow="etl", workflow_key="day-1", fingerprint_hash="fp1", catalog=instant, available=("raw",),
                candidates=[Candidate("etl/clean", 0.99, 100)], policy=POLICY).skipped["etl/clean"]
    assert zero.startswith("policy: no launch: expected saving 0.0 s") and "took 0.0 s in its history" in zero
    assert "no launch is worth its cost" in zero
    for reason in (late, prod, now, value, below, zero):
        assert "inf" not in reason and "threshold" not in reason
