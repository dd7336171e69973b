"""Signals from real Dagster runs, on SQLite and PostgreSQL: transitions, exactly-once, bad input."""

from __future__ import annotations

import logging
import threading

import dagster as dg
import pytest
from click.testing import CliRunner

from support.jobs_for_signals import branching_job, failing_job, hostile_job, nan_job
from shadow_dagster.dagster.definitions import STORE_RESOURCE_KEY, shadow_definitions
from shadow_dagster.dagster.ingest import CURSOR_NAME, check_event_storage, ingest
from shadow_dagster.dagster.resources import SignalStoreResource
from shadow_dagster.dagster.sensors import build_signal_sensor
from shadow_dagster.errors import PerRunEventStorageError
from shadow_dagster.store.engine import StoreConfigError
from shadow_dagster.store.signal_store import SignalStore, SignalStoreUnavailable


@pytest.fixture
def store(store_url):
    s = SignalStore(store_url)
    yield s
    s.dispose()


def by_step(signals):
    return {(s.run_id, s.step_key): s for s in signals}


def test_real_runs_give_exact_transitions(instance, store):
    ok = branching_job.execute_in_process(instance=instance)
    bad = failing_job.execute_in_process(instance=instance, raise_on_error=False)
    assert ok.success and not bad.success
    report = ingest(instance, store, resolution_ms=1)
    assert report.skipped == [] and report.rows > 0

    sigs = by_step(store.signals())
    run = sigs[(ok.run_id, None)]
    assert run.kind == "run" and run.transitions == ["start", "success"] and run.state == 0
    assert run.workflow_key == "wf-1" and run.tags["shadow_dagster/workflow"] == "wf-1"
    assert run.job_name == "branching_job"

    choose = sigs[(ok.run_id, "choose_branch")]
    assert choose.transitions == ["start", "success"] and choose.intensity == 1.0
    assert choose.output_bytes == 2048 and choose.outputs == 1 and choose.duration_ms is not None
    assert sigs[(ok.run_id, "weekend_path")].transitions == ["skipped"]
    assert sigs[(ok.run_id, "weekend_path")].state == 0
    assert sigs[(ok.run_id, "flaky")].transitions == ["start", "retry", "restart", "success"]
    assert sigs[(ok.run_id, "weekday_path")].transitions == ["start", "success"]
    for s in sigs.values():  # every TSA is ordered in time
        assert s.tsa == sorted(s.tsa)

    assert sigs[(bad.run_id, None)].transitions == ["start", "failure"]
    assert sigs[(bad.run_id, "always_fails")].transitions == ["start", "failure"]
    assert sigs[(bad.run_id, "always_fails")].workflow_key == bad.run_id  # no tag, no partition

    # the intensity reported mid-step is stored as an observation
    rows = [r for r in store.rows(run_id=ok.run_id, step_key="choose_branch") if r.transition == "intensity"]
    assert [r.intensity for r in rows] == [0.5]


def test_queries_filter_by_job_step_run_and_time(instance, store):
    a = branching_job.execute_in_process(instance=instance)
    b = failing_job.execute_in_process(instance=instance, raise_on_error=False)
    ingest(instance, store)
    assert {s.run_id for s in store.signals(job_name="failing_job")} == {b.run_id}
    assert {s.step_key for s in store.signals(run_id=a.run_id, step_key="flaky")} == {"flaky"}
    assert {s.run_id for s in store.signals(workflow_key="wf-1")} == {a.run_id}
    last = max(r.ts_ms for r in store.rows())
    assert store.rows(since_ms=last + 1) == []
    assert len(store.rows(until_ms=last)) == store.count()


def test_resolution_quantises_every_timestamp(instance, store):
    branching_job.execute_in_process(instance=instance)
    ingest(instance, store, resolution_ms=60_000)
    rows = store.rows()
    assert rows and all(r.ts_ms % 60_000 == 0 for r in rows)
    flaky = [s for s in store.signals() if s.step_key == "flaky"][0]
    assert flaky.transitions == ["start", "retry", "restart", "success"]  # collapsed ticks, nothing dropped


def test_fault_between_write_and_cursor_save_loses_and_duplicates_nothing(instance, store):
    for _ in range(3):
        branching_job.execute_in_process(instance=instance)
    total_events = len(instance.event_log_storage.get_logs_for_all_runs_by_log_id(after_cursor=-1))

    calls = {"n": 0}

    def crash_on_second_page():
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed between batch write and cursor save")

    with pytest.raises(KeyboardInterrupt):
        ingest(instance, store, page_size=25, _after_rows=crash_on_second_page)
    committed = store.get_cursor(CURSOR_NAME)
    assert committed > 0 and store.count() > 0  # the first page landed with its cursor

    report = ingest(instance, store, page_size=25)
    assert report.cursor_before == committed
    assert store.get_cursor(CURSOR_NAME) == max(
        instance.event_log_storage.get_logs_for_all_runs_by_log_id(after_cursor=-1)
    )
    n = store.count()

    # a reference store fed without faults holds exactly the same rows
    reference = SignalStore(store.url.replace("store.db", "reference.db")) if store.backend == "sqlite" else None
    if reference is not None:
        ingest(instance, reference, page_size=total_events)
        assert sorted(reference.rows()) == sorted(store.rows())
        reference.dispose()

    # a stale cursor (the sensor's copy lost, the process restarted) re-reads: nothing twice
    with store.engine.begin() as conn:
        from shadow_dagster.store import schema

        conn.execute(schema.cursors.delete())
    again = ingest(instance, store, page_size=25)
    assert again.events == total_events and store.count() == n
    keys = [(r.event_id, r.ts_ms) for r in store.rows()]
    assert len(keys) == len(set(keys))


def test_overlapping_ticks_insert_nothing_twice(instance, store_url):
    for _ in range(3):
        branching_job.execute_in_process(instance=instance)
    stores = [SignalStore(store_url), SignalStore(store_url)]
    errors = []

    def tick(s):
        try:
            ingest(instance, s, page_size=10)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=tick, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    single = SignalStore(store_url)
    rows = single.rows()
    keys = [(r.event_id, r.ts_ms) for r in rows]
    assert len(keys) == len(set(keys))
    expected = {eid for eid in instance.event_log_storage.get_logs_for_all_runs_by_log_id(after_cursor=-1)}
    assert {r.event_id for r in rows} <= expected
    assert {r.run_id for r in rows} == {r.run_id for r in instance.get_runs()}
    for s in [*stores, single]:
        s.dispose()


def test_malformed_events_are_counted_skipped_and_named(instance, store, caplog):
    hostile_job.execute_in_process(instance=instance)
    storage = instance.event_log_storage
    ok_run = branching_job.execute_in_process(instance=instance)
    # a step event with no step key, written straight into the event log
    start = next(
        e for e in storage.get_logs_for_all_runs_by_log_id(after_cursor=-1).values()
        if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_START
    )
    storage.store_event(
        start._replace(
            step_key=None,
            dagster_event=dg.DagsterEvent(event_type_value="STEP_START", job_name=start.job_name),
        )
    )
    caplog.set_level(logging.WARNING, logger="shadow_dagster.ingest")
    report = ingest(instance, store)
    reasons = dict(report.skipped)
    assert len(reasons) == 2
    assert any("intensity must be a number in [0, 1], got '2.5'" in r for r in reasons.values())
    assert any("STEP_START event has no step key" in r for r in reasons.values())
    for storage_id in reasons:
        assert f"storage_id={storage_id}" in caplog.text
    # everything else landed
    assert by_step(store.signals())[(ok_run.run_id, "flaky")].transitions[-1] == "success"


def test_report_intensity_rejects_nan_at_the_call_site(instance):
    result = nan_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("reports_nan")
    assert "intensity must be a number in [0, 1], got nan" in failure.error.cause.message


def test_unreachable_database_fails_clearly():
    with pytest.raises(SignalStoreUnavailable, match=r"signal store postgresql\+psycopg2://postgres@127.0.0.1:1/test is unreachable"):
        SignalStore("postgresql://postgres@127.0.0.1:1/test")


def test_sensor_tick_with_unreachable_store_fails_and_keeps_cursor(instance):
    branching_job.execute_in_process(instance=instance)
    sensor = build_signal_sensor()
    resource = SignalStoreResource(url="postgresql://postgres@127.0.0.1:1/test")
    ctx = dg.build_sensor_context(instance=instance, cursor="7", resources={STORE_RESOURCE_KEY: resource})
    with pytest.raises(SignalStoreUnavailable, match="127.0.0.1:1"):
        sensor(ctx)
    assert ctx.cursor == "7"


def test_sensor_tick_ingests_and_mirrors_the_cursor(instance, store_url):
    branching_job.execute_in_process(instance=instance)
    sensor = build_signal_sensor()
    resource = SignalStoreResource(url=store_url, resolution_ms=1)
    ctx = dg.build_sensor_context(instance=instance, resources={STORE_RESOURCE_KEY: resource})
    result = sensor(ctx)
    assert "Ingested" in result.skip_reason.skip_message
    last = max(instance.event_log_storage.get_logs_for_all_runs_by_log_id(after_cursor=-1))
    assert ctx.cursor == str(last)
    assert resource.get_store().get_cursor(CURSOR_NAME) == last


def test_per_run_event_storage_fails_with_the_fix(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as inst:
        with pytest.raises(PerRunEventStorageError, match="ConsolidatedSqliteEventLogStorage"):
            check_event_storage(inst)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"resolution_ms": 0}, "resolution 0 ms is out of range"),
        ({"resolution_ms": 120_000}, "out of range"),
        ({"store_url": "not a url"}, "is not a database URL"),
        ({"store_url": "mysql://x@y/z"}, "supports sqlite and postgresql"),
        ({"store_url": "sqlite://"}, "in-memory"),
        ({"retention_days": 0}, "retention_days must be a positive, finite number"),
    ],
)
def test_invalid_configuration_fails_at_load_time(kwargs, message):
    with pytest.raises(Exception, match=message):
        shadow_definitions(**kwargs)


def test_store_url_rejects_bad_urls_directly():
    with pytest.raises(StoreConfigError, match="names no database"):
        SignalStore("postgresql://postgres@127.0.0.1:5432")


def test_retention_deletes_only_rows_older_than_the_window(instance, store):
    branching_job.execute_in_process(instance=instance)
    ingest(instance, store)
    rows = store.rows()
    newest = max(r.ts_ms for r in rows)
    store.retention_days = 1.0
    oldest = min(r.ts_ms for r in rows)
    assert store.apply_retention(now_ms=oldest + 86_400_000) == 0
    assert store.count() == len(rows)
    deleted = store.apply_retention(now_ms=newest + 86_400_000 + 1)
    assert deleted == len(rows) and store.count() == 0


def test_cli_ingest_and_signals(instance, dagster_home, tmp_path, monkeypatch):
    import json

    from shadow_dagster.cli import main

    run = branching_job.execute_in_process(instance=instance)
    monkeypatch.delenv("SHADOW_DAGSTER_STORE_URL", raising=False)
    runner = CliRunner()
    out = runner.invoke(main, ["ingest", "--json", "--resolution-ms", "1"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output.strip().splitlines()[-1])["rows"] > 0
    out = runner.invoke(main, ["signals", "--run", run.run_id, "--json"])
    assert out.exit_code == 0, out.output
    sigs = [json.loads(line) for line in out.output.strip().splitlines()]
    flaky = next(s for s in sigs if s["step_key"] == "flaky")
    assert flaky["transitions"] == ["start", "retry", "restart", "success"] and len(flaky["tsa"]) == 4
    out = runner.invoke(main, ["signals", "--job", "branching_job", "--since", "1h"])
    assert out.exit_code == 0 and "flaky" in out.output and "restart" in out.output
    out = runner.invoke(main, ["signals", "--since", "yesterday-ish"])
    assert out.exit_code != 0 and "cannot read time 'yesterday-ish'" in out.output
    assert "Traceback" not in out.output


def test_a_recent_gap_in_storage_ids_holds_the_cursor_until_it_is_old():
    from types import SimpleNamespace

    from shadow_dagster.dagster.ingest import committed_prefix

    records = {sid: SimpleNamespace(timestamp=ts) for sid, ts in [(5, 100.0), (6, 101.0), (8, 102.0), (9, 103.0)]}
    # id 7 may still be committing: stop before the gap while the event after it is recent
    assert list(committed_prefix(records, 4, now=105.0, grace_s=10.0)) == [5, 6]
    # once the event after the gap is older than the grace period, the gap is a rollback
    assert list(committed_prefix(records, 4, now=200.0, grace_s=10.0)) == [5, 6, 8, 9]
    # a gap right after the cursor counts too
    assert list(committed_prefix(records, 3, now=105.0, grace_s=10.0)) == []


def test_an_ingesting_tick_records_an_observation_and_says_what_it_did(instance, tmp_path):
    """A tick that wrote rows reports an AssetObservation of the signals asset with rows and events
    (Dagster persists it in the asset catalog, as its daemon does with `report_runless_asset_event`);
    a tick with nothing new says so and records nothing, and the observation itself is not
    ingested as new work by the next tick."""
    from shadow_dagster.dagster.history_assets import SIGNALS_KEY

    branching_job.execute_in_process(instance=instance)
    sensor = build_signal_sensor()
    resource = SignalStoreResource(url=f"sqlite:///{tmp_path / 's.db'}", resolution_ms=1)

    def tick(cursor=None):
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={STORE_RESOURCE_KEY: resource})
        return sensor.evaluate_tick(ctx)

    first = tick()
    rows = resource.get_store().count()
    assert first.run_requests == [] and rows > 0
    assert first.skip_message.startswith("Ingested ") and f"-> {rows} signal rows" in first.skip_message
    (obs,) = first.asset_events
    assert isinstance(obs, dg.AssetObservation) and obs.asset_key == SIGNALS_KEY
    assert obs.metadata["rows"].value == rows and obs.metadata["events"].value > 0
    assert obs.metadata["cursor"].value == int(first.cursor)
    for event in first.asset_events:        # what the sensor daemon does with a tick's asset events
        instance.report_runless_asset_event(event)
    stored = instance.fetch_observations(SIGNALS_KEY, limit=5).records
    assert len(stored) == 1 and stored[0].asset_observation.metadata["rows"].value == rows

    second = tick(first.cursor)
    assert second.asset_events == [] and second.run_requests == []
    assert second.skip_message.startswith("nothing to ingest") and first.cursor in second.skip_message
    assert resource.get_store().count() == rows
