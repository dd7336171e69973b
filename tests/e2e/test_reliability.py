"""Reliability trials at CI size: exactly-once under kills (SQLite, PostgreSQL), stale reuse on the
key function, spoofing scenarios, and the `reliability` command end to end (real runs throughout)."""

import json

import pytest
from click.testing import CliRunner

from shadow_dagster_bench.cli_reliability import reliability
from shadow_dagster_bench.reliability import ingest_faults, spoofing, stale_pure
from shadow_dagster_bench.reliability.ingest_child import parse_kill
from shadow_dagster_bench.reliability.suite import plan
from shadow_dagster_bench.reliability.workload import build_event_log
from shadow_dagster.signals.model import SignalRow


@pytest.fixture(scope="module")
def event_log(tmp_path_factory):
    """A real consolidated-SQLite instance holding the events of four workload runs."""
    from dagster import DagsterInstance

    from shadow_dagster_bench.reliability.workload import consolidated_home

    home = consolidated_home(tmp_path_factory.mktemp("rel") / "home")
    instance = DagsterInstance.from_config(str(home))
    build_event_log(instance, 4)
    yield instance, str(home)
    instance.dispose()


def row(eid, step="s"):
    return SignalRow(eid, 1000, "step", "r", "j", step, None, "w", "start", 1, None, None, None, None)


def test_compare_counts_planted_duplicates_losses_and_changes():
    expected = {1: row(1), 2: row(2), 3: row(3)}
    assert ingest_faults.compare([row(1), row(2), row(3)], expected) == {"duplicates": 0, "losses": 0, "mismatched": 0}
    found = ingest_faults.compare([row(1), row(1), row(2, "other"), row(9)], expected)
    assert found == {"duplicates": 2, "losses": 1, "mismatched": 1}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_killed_ingestion_resumes_without_duplicates_or_losses(event_log, tmp_path, backend, request):
    instance, home = event_log
    pg_url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    r = ingest_faults.fault_trials(instance, home, tmp_path, backend=backend, trials=4, seed=3, pg_url=pg_url)
    assert r["by_mode"] == {"random": 1, "after_rows": 1, "mid_batch": 1, "after_commit": 1}
    assert r["killed"] >= 3 and r["expected_rows"] > 40 and r["pages_per_pass"] > 5
    assert (r["duplicates"], r["losses"], r["mismatched"]) == (0, 0, 0)
    assert r["rows_beyond_cursor_after_crash"] == 0 and r["rows_missing_below_cursor_after_crash"] == 0


def test_kill_point_and_trial_count_errors_are_clear(event_log, tmp_path):
    for bad in ("after_rows", "after_rows:0", "nowhere:2", "mid_batch:x"):
        with pytest.raises(ValueError, match="SHADOW_DAGSTER_KILL_AT"):
            parse_kill(bad)
    assert parse_kill("mid_batch:3") == ("mid_batch", 3) and parse_kill("") is None
    with pytest.raises(ValueError, match="trials must be at least 1"):
        ingest_faults.fault_trials(event_log[0], event_log[1], tmp_path, backend="sqlite", trials=0)
    with pytest.raises(ValueError, match="backend must be 'sqlite' or 'postgres'"):
        ingest_faults.fault_trials(event_log[0], event_log[1], tmp_path, backend="mysql", trials=1)
    with pytest.raises(ValueError, match="trials must be a positive integer"):
        plan(0)


def test_key_function_reuses_only_equal_parts():
    r = stale_pure.pure_trials(1000, seed=11)
    assert r["missed_reuses"] == 0  # reordered dicts and untouched parts always match
    assert r["correct_reuses"] >= 200 and r["refused"] >= 100 and r["recomputed"] >= 500
    assert r["stale_reuses"] == 0 and r["stale_by_mutation"] == {} and r["stale_examples"] == []


def test_code_versions_differing_by_whitespace_get_different_keys():
    base = dict(asset_key="a", partition_key=None, input_data_versions={}, config=None)
    assert stale_pure.try_provenance_key(code_version="1", **base) != \
        stale_pure.try_provenance_key(code_version="1 ", **base)


def test_oracle_is_type_strict_and_order_free():
    assert stale_pure.same({"a": 1, "b": [1, {"c": True}]}, {"b": [1, {"c": True}], "a": 1})
    assert not stale_pure.same({"a": 1}, {"a": 1.0}) and not stale_pure.same([True], [1])
    assert not stale_pure.same({"a": None}, {"a": None, "b": None})


SAFE = [s for s in spoofing.SCENARIOS if s != "output_metadata"]


@pytest.mark.parametrize("name", SAFE)
def test_spoofing_never_reaches_live_storage(instance, tmp_path, name):
    r = spoofing.scenario(instance, name, tmp_path)
    assert r["right_value"]
    assert r["reused"] == r["allowed"] == (name == "hand_tagged_same_provenance")


def test_spoofed_output_metadata_does_not_replace_the_value(instance, tmp_path):
    r = spoofing.scenario(instance, "output_metadata", tmp_path)
    assert r["right_value"] and not r["reused"]


def test_reliability_command_prints_one_json_summary(dagster_home):
    out = CliRunner().invoke(reliability, ["--trials", "1", "--no-postgres", "--json", "--details", "--seed", "5"])
    assert out.exit_code == 0, out.output[-3000:]
    result = json.loads(out.output.strip().splitlines()[-1])
    for key in ("trials", "duplicates", "losses", "stale_reuses", "live_writes", "critical_in_shadow",
                "spoofed_reuses"):
        assert isinstance(result[key], int), key
    s = result["sections"]
    assert result["trials"] == 1 + 1000 + 8 + len(s["isolation"]["scenarios"]) + len(spoofing.SCENARIOS)
    assert (result["duplicates"], result["losses"], result["live_writes"], result["critical_in_shadow"]) == (0,) * 4
    assert result["postgres"] == "skipped" and "turned off" in s["postgres_skipped"]
    real = s["stale_real"]
    # one trial per mutation: reuse exactly where the live step reads what the shadow run read
    assert (real["stale_reuses"], real["wrong_values"], real["missed_reuses"], real["correct_reuses"]) == (0, 0, 0, 2)
    iso = s["isolation"]
    assert iso["torn_promotions"] == 0 and iso["complete_without_file"] == 0
    attacks = {k: v for k, v in iso["scenarios"].items() if k not in ("plain", "killed_shadow_write", "killed_promotion")}
    assert len(attacks) == 8 and all(v["refused"] == 1 for v in attacks.values())
    assert iso["scenarios"]["killed_promotion"]["promoted_on_retry"] == 1
    assert s["stale_pure"]["stale_by_mutation"] == {} and result["stale_reuses"] == 0
    assert {k for k, v in s["spoofing"]["scenarios"].items() if v["reused"] and not v["allowed"]} == set()
    assert result["spoofed_reuses"] == 0


def test_reliability_command_rejects_bad_trials():
    out = CliRunner().invoke(reliability, ["--trials", "0"])
    assert out.exit_code != 0 and "Invalid value for '--trials'" in out.output
