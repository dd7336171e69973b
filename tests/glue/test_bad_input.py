"""Bad input corpus: hostile events, clock skew, damaged fingerprint files, invalid configuration,
empty history. Each gets a clear error or a documented skip, and loses nothing else."""

import math
import pickle
import time
import zipfile

import dagster as dg
import numpy as np
import pytest

from shadow_dagster.dagster.definitions import REFIT_JOB, shadow_definitions
from shadow_dagster.dagster.fingerprints import fingerprint_path, load_fingerprint, load_fingerprints
from shadow_dagster.dagster.ingest import ingest
from shadow_dagster.fingerprint import Fingerprint, FingerprintFormatError
from shadow_dagster_bench.synthetic import regime_history
from shadow_dagster_bench.reliability.ingest_faults import compare, expected_rows
from shadow_dagster_bench.reliability.workload import reliability_job
from shadow_dagster.store.signal_store import SignalStore

HOSTILE_KEYS = ["k" * 10_000, "ünïcødé 漢字 🚀 \u202e", "'; drop table shadow_signals; --", 'a"b\\c%s?:x', "tab\tnew\nline"]
HOSTILE_TAGS = {"t" * 1000: "v" * 10_000, "q'\"; --": "漢字 🚀", "shadow_dagster/workflow": "wf'; --"}
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_schema_url")
    s = SignalStore(url)
    yield s
    s.dispose()


def a_step_start(instance):
    return next(e for e in instance.event_log_storage.get_logs_for_all_runs_by_log_id(after_cursor=-1).values()
                if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_START)


def store_step_event(instance, template, **changes):
    """Write a copy of a real STEP_START entry with `changes` (step_key also set on the event)."""
    if "step_key" in changes:
        changes["dagster_event"] = template.dagster_event._replace(step_key=changes["step_key"])
    instance.event_log_storage.store_event(template._replace(**changes))


def test_hostile_step_keys_tags_and_clock_skew_land_exactly(instance, store):
    reliability_job.execute_in_process(instance=instance, run_config=QUIET)
    start = a_step_start(instance)
    for key in HOSTILE_KEYS:
        store_step_event(instance, start, step_key=key)
    now = time.time()
    store_step_event(instance, start, step_key="from_the_future", timestamp=now + 365 * 86400)
    store_step_event(instance, start, step_key="from_the_past", timestamp=start.timestamp - 3600)  # out of order
    store_step_event(instance, start, step_key="before_epoch", timestamp=-5.0)  # skipped with its reason
    store_step_event(instance, start, step_key="zero_time", timestamp=0.0)  # skipped with its reason
    tagged = reliability_job.execute_in_process(instance=instance, run_config=QUIET, tags=HOSTILE_TAGS)

    report = ingest(instance, store, resolution_ms=1, page_size=10_000)
    assert report.pages == 1  # all of it in one page: the bad events must not take the good ones down
    reasons = [r for _, r in report.skipped]
    assert len(reasons) == 2 and all("invalid timestamp" in r for r in reasons)
    # nothing lost, nothing twice, every row exactly what the converter makes of the whole log
    assert compare(store.rows(), expected_rows(instance, 1)) == {"duplicates": 0, "losses": 0, "mismatched": 0}
    steps = {r.step_key for r in store.rows()}
    assert set(HOSTILE_KEYS) <= steps and {"from_the_future", "from_the_past"} <= steps
    assert not {"before_epoch", "zero_time"} & steps
    future = store.rows(step_key="from_the_future")
    assert [r.ts_ms // 1000 for r in future if r.step_key] == [int(now + 365 * 86400)]
    # out-of-order events are kept and sorted by time when assembled into signals
    for sig in store.signals():
        assert sig.tsa == sorted(sig.tsa)
    run_start = next(s for s in store.signals(run_id=tagged.run_id) if s.step_key is None)
    assert {k: run_start.tags[k] for k in HOSTILE_TAGS} == HOSTILE_TAGS
    assert run_start.workflow_key == "wf'; --"


def test_nul_byte_in_a_step_key_lands_on_sqlite(instance, tmp_path):
    reliability_job.execute_in_process(instance=instance, run_config=QUIET)
    store_step_event(instance, a_step_start(instance), step_key="nul\x00byte")
    s = SignalStore(f"sqlite:///{tmp_path / 's.db'}")
    ingest(instance, s, resolution_ms=1)
    assert compare(s.rows(), expected_rows(instance, 1))["losses"] == 0
    assert "nul\x00byte" in {r.step_key for r in s.rows()}
    s.dispose()


@pytest.mark.postgres
def test_nul_byte_in_a_step_key_does_not_block_postgres(instance, pg_schema_url):
    reliability_job.execute_in_process(instance=instance, run_config=QUIET)
    store_step_event(instance, a_step_start(instance), step_key="nul\x00byte")
    reliability_job.execute_in_process(instance=instance, run_config=QUIET)
    s = SignalStore(pg_schema_url)
    try:
        report = ingest(instance, s, resolution_ms=1)
        expected = expected_rows(instance, 1)
        found = compare(s.rows(), expected)
        # the one unstorable event is skipped with its reason (so it is the one row missing); the rest land
        assert found["duplicates"] == 0 and found["losses"] == len(report.skipped) == 1
        assert "NUL byte" in report.skipped[0][1]
        assert report.cursor_after == max(instance.event_log_storage.get_logs_for_all_runs_by_log_id(after_cursor=-1))
    finally:
        s.dispose()


# ------------------------------------------------------------------ fingerprint files
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    path = tmp_path_factory.mktemp("fp") / "wf.fingerprint"
    Fingerprint.fit(regime_history(60, n_steps=6, seed=2), window_days=None).save(path)
    return path


def damage(kind, good: bytes, path):
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "one_byte_flipped":
        with zipfile.ZipFile(path, "w") as z:  # a valid zip whose metadata says something else
            with zipfile.ZipFile(__import__("io").BytesIO(good)) as src:
                for name in src.namelist():
                    data = src.read(name)
                    if name == "__meta__.npy":
                        data = data.replace(b'"n_cases":60', b'"n_cases":61')
                    z.writestr(name, data)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"schema": "shadow_dagster.fingerprint"}))
    elif kind == "foreign_npz":
        np.savez(open(path, "wb"), weights=np.arange(3))
    elif kind == "json_text":
        path.write_text('{"schema": "shadow_dagster.fingerprint", "version": 1}')
    elif kind == "directory":
        path.mkdir()
    elif kind == "missing":
        pass


@pytest.mark.parametrize("kind", ["truncated", "one_byte_flipped", "empty", "random_bytes", "pickle", "foreign_npz",
                                  "json_text", "directory", "missing"])
def test_damaged_fingerprint_files_fail_with_the_file_and_problem(fitted, tmp_path, kind):
    assert Fingerprint.load(fitted).n_cases == 60
    bad = tmp_path / f"{kind}.fingerprint"
    damage(kind, fitted.read_bytes(), bad)
    with pytest.raises(FingerprintFormatError) as err:
        Fingerprint.load(bad)
    assert str(bad) in str(err.value) and err.value.problem
    if kind == "one_byte_flipped":
        assert "content hash mismatch" in err.value.problem


def test_a_damaged_file_in_the_fingerprint_directory_is_named(fitted, tmp_path):
    good = fingerprint_path("wf", tmp_path)
    good.write_bytes(fitted.read_bytes())
    assert load_fingerprint("wf", tmp_path).n_cases == 60
    bad = fingerprint_path("other", tmp_path)
    bad.write_bytes(fitted.read_bytes()[:100])
    with pytest.raises(FingerprintFormatError, match="other.fingerprint: not a fingerprint file or truncated"):
        load_fingerprints(tmp_path)


# ------------------------------------------------------------------ configuration
@pytest.mark.parametrize("kwargs, message", [
    ({"resolution_ms": 1.5}, "resolution"),
    ({"resolution_ms": 0}, "out of range"),
    ({"page_size": 0}, "page_size must be between 1 and 100000"),
    ({"page_size": 10**9}, "page_size must be between 1 and 100000"),
    ({"window_days": float("nan")}, "window_days must be a positive, finite number"),
    ({"window_days": "7"}, "window_days must be a positive, finite number"),
    ({"retention_days": 5}, "shorter than window_days"),
    ({"retention_days": float("nan")}, "retention_days must be a positive, finite number"),
    ({"refit_cron": "not a cron"}, "invalid cron schedule 'not a cron'"),
    ({"store_url": "sqlite://"}, "in-memory"),
    ({"store_url": "postgresql://u@h:5432"}, "names no database"),
])
def test_invalid_definitions_arguments_fail_at_load_time(kwargs, message):
    with pytest.raises(Exception, match=message):
        shadow_definitions(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"resolution_ms": True}, {"sensor_interval_seconds": 0}, {"sensor_interval_seconds": -5},
    {"refit_min_new_runs": -1}, {"refit_min_new_runs": "x"},
    {"window_days": math.inf, "retention_days": math.inf},
])
def test_more_invalid_definitions_arguments_fail_at_load_time(kwargs):
    with pytest.raises((ValueError, TypeError)):
        shadow_definitions(**kwargs).get_repository_def()


# ------------------------------------------------------------------ empty history
def test_empty_history_gives_a_reason_everywhere(instance, tmp_path):
    fp = Fingerprint.fit([])
    assert fp.reason == "empty history: no workflow instances in the window" and fp.predictor is None
    assert fp.predict(["a"]).reason == fp.reason and fp.predict([]).steps == []
    fp.save(tmp_path / "empty.fingerprint")
    assert Fingerprint.load(tmp_path / "empty.fingerprint").reason == fp.reason
    one = Fingerprint.fit(regime_history(1, n_steps=4))
    assert one.reason.startswith("one-run history")

    defs = shadow_definitions(store_url=f"sqlite:///{tmp_path / 'empty.db'}")
    result = defs.resolve_job_def(REFIT_JOB).execute_in_process(instance=instance)
    assert result.success
    meta = {m.asset_key.to_user_string(): m.metadata for node in ("workflow_graph", "workflow_fingerprint")
            for m in result.asset_materializations_for_node(node)}
    assert meta["workflow_graph"]["workflows"].value == 0
    assert meta["workflow_fingerprint"]["accuracy_md"].value == "no workflow history in the window yet"

    from shadow_dagster.dagster.live import predict_run

    run = reliability_job.execute_in_process(instance=instance, run_config=QUIET)
    pred = predict_run(instance, run.run_id)
    assert pred.prediction.steps == [] and "no fingerprint for workflow 'reliability_job' yet" in pred.prediction.reason
    with pytest.raises(ValueError, match="no run 'nope' in this Dagster instance"):
        predict_run(instance, "nope")


# ------------------------------------------------------------------ the command line's edges
READS = [["signals"], ["predict", "some-run"], ["shadow", "list"], ["fingerprint", "show", "ingest_job"]]
WRITES = [["ingest"], ["fingerprint", "fit"], ["shadow", "gc"], ["simulate", "--days", "1"]]


def cli(args):
    from click.testing import CliRunner

    from shadow_dagster.cli import main

    return CliRunner().invoke(main, args)


def tree(root) -> list[str]:
    """Every file and folder under `root` (what a command must not add to)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def one_line_error(out) -> str:
    assert out.exit_code == 1 and isinstance(out.exception, SystemExit), out.output
    assert "Traceback" not in out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1, out.output
    return lines[0]


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("SHADOW_DAGSTER_STORE_URL", "SHADOW_DAGSTER_FINGERPRINT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("args", READS + WRITES, ids=" ".join)
def test_a_missing_dagster_home_is_one_line_and_never_created(args, tmp_path, clean_env):
    home = tmp_path / "no" / "such" / "home"
    clean_env.setenv("DAGSTER_HOME", str(home))
    before = tree(tmp_path)
    line = one_line_error(cli(args))
    assert f"DAGSTER_HOME={home} does not exist" in line
    assert tree(tmp_path) == before and not home.exists()


@pytest.mark.parametrize("args", READS + [["fingerprint", "fit"], ["shadow", "gc"]], ids=" ".join)
def test_reads_on_a_folder_that_holds_no_instance_create_nothing(args, tmp_path, clean_env):
    home = tmp_path / "empty_home"
    home.mkdir()
    clean_env.setenv("DAGSTER_HOME", str(home))
    before = tree(tmp_path)
    out = cli(args)
    assert "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1, out.output
    assert tree(tmp_path) == before
    if args[0] in ("signals", "fingerprint") and args[1:2] != ["show"]:
        assert out.exit_code == 0 and "no signal store at" in out.output    # nothing ingested yet
    elif args == ["shadow", "gc"]:
        assert out.exit_code == 0 and "nothing to collect" in out.output
    else:
        assert out.exit_code == 1


@pytest.mark.parametrize("args", [["signals"], ["shadow", "list"], ["fingerprint", "fit"]], ids=" ".join)
def test_a_store_url_into_a_missing_folder_is_named_and_not_created(args, instance, dagster_home, tmp_path,
                                                                     clean_env):
    url = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}"
    before = tree(tmp_path)
    line = one_line_error(cli(args + ["--store-url", url]))
    assert f"its folder {tmp_path / 'missing' / 'dir'} does not exist" in line
    assert tree(tmp_path) == before


def test_reads_on_a_real_instance_without_a_store_create_nothing(instance, dagster_home, tmp_path, clean_env):
    reliability_job.execute_in_process(instance=instance, run_config=QUIET)
    run_id = instance.get_runs(limit=1)[0].run_id
    before = tree(tmp_path)
    for args in (["signals"], ["shadow", "list"], ["predict", run_id], ["fingerprint", "fit"],
                 ["shadow", "gc"]):
        out = cli(args)
        assert out.exit_code == 0 and "Traceback" not in out.output, (args, out.output)
        assert tree(tmp_path) == before, args
    assert "nothing to collect" in cli(["shadow", "gc"]).output


def test_fingerprint_show_on_a_plain_text_file_says_what_it_is(tmp_path, clean_env):
    text = tmp_path / "notes.txt"
    text.write_text("just some notes\n")
    line = one_line_error(cli(["fingerprint", "show", "--path", str(text)]))
    assert f"{text} is not a shadow-dagster fingerprint file" in line and "pickle" not in line
