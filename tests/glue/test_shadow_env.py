"""Steps that write through resources: refused in shadow runs unless every resource is shadow-safe,
before the body, with the reason in words, while the live side is watched."""

import threading
from pathlib import Path

import pytest
from dagster import ConfigurableResource, Definitions, FilesystemIOManager, MaterializeResult, asset, materialize

from shadow_dagster import with_shadow
from shadow_dagster.dagster.shadow_env import ShadowSafe, is_shadow_safe, resources_written
from shadow_dagster.dagster.shadow_job import build_catalog
from shadow_dagster.tags import CRITICAL_TAG, PREDICTION_TAG, SHADOW_TAG

SHADOW = {SHADOW_TAG: "true", PREDICTION_TAG: "pred-env"}
NONCRIT = {CRITICAL_TAG: "false"}
BODIES: list[str] = []


class Files(ConfigurableResource):
    """A plain resource writing files in place: it knows nothing of shadow runs."""

    root: str

    def write(self, name: str, text: str) -> None:
        Path(self.root, name).write_text(text)


class Settings(ConfigurableResource, ShadowSafe):
    scale: float = 1.0


@asset(code_version="1", tags=NONCRIT)
def report(files: Files) -> MaterializeResult:
    BODIES.append("report")
    files.write("report.csv", "new\n")
    return MaterializeResult(metadata={"rows": 1})


@asset(code_version="1", tags=NONCRIT)
def scaled(settings: Settings) -> MaterializeResult:
    BODIES.append("scaled")
    return MaterializeResult(metadata={"scale": settings.scale})


@asset(code_version="1", tags=NONCRIT)
def pickled() -> int:
    BODIES.append("pickled")
    return 7


class LiveWatcher:
    """Polls the live folder while a shadow run runs and records every change it sees."""

    def __init__(self, root: Path):
        self.root, self.changes, self._stop = root, [], threading.Event()
        self.before = self.snapshot()

    def snapshot(self):
        return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(self.root.iterdir()) if p.is_file()}

    def _poll(self):
        while not self._stop.is_set():
            now = self.snapshot()
            if now != self.before:
                self.changes.append(now)
            self._stop.wait(0.005)

    def __enter__(self):
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self.snapshot() != self.before:
            self.changes.append(self.snapshot())


@pytest.fixture
def live(tmp_path):
    root = tmp_path / "live"
    root.mkdir()
    (root / "report.csv").write_text("live\n")
    BODIES.clear()
    return root


def _defs(live, **options):
    user = Definitions(assets=[report, scaled, pickled],
                       resources={"files": Files(root=str(live)), "settings": Settings(),
                                  "io_manager": FilesystemIOManager(base_dir=str(live))})
    return with_shadow(user, store_url=f"sqlite:///{live.parent / 's.db'}", **options)


def _shadow_run(defs, instance, selection):
    job = defs.resolve_job_def("__shadow_dagster_shadow_job")
    return job.execute_in_process(instance=instance, tags={**SHADOW, **job.tags}, asset_selection=selection,
                                  raise_on_error=False)


def test_resources_written_and_shadow_safety():
    assert resources_written(report.node_def) == {"files"}            # -> MaterializeResult: no IO manager
    assert resources_written(pickled.node_def) == {"io_manager"}
    assert is_shadow_safe(Settings()) and not is_shadow_safe(Files(root="/x"))
    assert not is_shadow_safe(FilesystemIOManager())


def test_unsafe_resource_step_is_refused_before_its_body_while_live_is_watched(instance, live):
    defs = _defs(live)
    from dagster import AssetKey

    with LiveWatcher(live) as watch:
        res = _shadow_run(defs, instance, [AssetKey("report"), AssetKey("pickled")])
    assert not res.success
    assert BODIES == []                                                # neither body ran
    assert watch.changes == []                                         # the live folder never changed
    text = res.failure_data_for_node("report").error.to_string()
    assert "needs resource(s) 'files' that are not shadow-safe" in text
    assert "'io_manager'" in res.failure_data_for_node("pickled").error.to_string()
    assert instance.get_latest_materialization_event(AssetKey("report")) is None


def test_shadow_safe_resources_run_and_live_runs_are_unchanged(instance, live):
    from dagster import AssetKey

    defs = _defs(live)
    res = _shadow_run(defs, instance, [AssetKey("scaled")])
    assert res.success and BODIES == ["scaled"]
    live_run = materialize([report], instance=instance, resources={"files": Files(root=str(live))})
    assert live_run.success and (live / "report.csv").read_text() == "new\n"   # live: body runs as always


def test_catalog_says_why_a_step_is_not_pre_executed_and_read_only_keys_lift_it(live):
    from dagster import define_asset_job

    def catalog(**options):
        user_job = define_asset_job("nightly", selection=["report", "scaled", "pickled"])
        defs = _defs(live, **options)
        merged = Definitions.merge(defs, Definitions(jobs=[user_job]))
        return build_catalog(merged.get_repository_def())

    cat = catalog()
    assert "'files'" in cat["nightly/report"].refusal and "with_shadow(read_only_resources" in cat["nightly/report"].refusal
    # a plain FilesystemIOManager output is eligible: in the shadow runner it goes to the shadow store
    assert cat["nightly/pickled"].refusal is None and not cat["nightly/pickled"].critical
    assert cat["nightly/scaled"].refusal is None and not cat["nightly/scaled"].critical
    lifted = catalog(read_only_resources=["files"])
    assert lifted["nightly/report"].refusal is None


def test_read_only_resources_must_be_a_list_of_keys(live):
    with pytest.raises(TypeError, match="read_only_resources must be a list of resource keys, got 'files'"):
        _defs(live, read_only_resources="files")
