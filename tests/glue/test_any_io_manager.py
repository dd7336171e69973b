"""Pre-execution with the user's own IO managers: in a run of the shadow runner the outputs of the
predicted assets go to the shadow store, never through the user's IO manager; a live run that
reuses one hands the value to that IO manager, so live data lands exactly where it always does."""

from __future__ import annotations

import json
import pickle
import threading

from dagster import (
    AssetKey,
    ConfigurableIOManager,
    Definitions,
    FilesystemIOManager,
    asset,
    define_asset_job,
)

from shadow_dagster.dagster.critical import guard_assets
from shadow_dagster.dagster.reuse import shadow_reusable
from shadow_dagster.dagster.shadow_runner import execute_shadow_request, shadow_request
from shadow_dagster.dagster.shadow_job import build_catalog, shadow_job
from shadow_dagster.tags import CRITICAL_TAG, REUSED_FROM, is_shadow_run

NONCRIT = {CRITICAL_TAG: "false"}


class JsonIOManager(ConfigurableIOManager):
    """A user's own IO manager: one JSON file per asset under `root` (not shadow-aware)."""

    root: str

    def _path(self, key):
        import os

        return os.path.join(self.root, *key.path) + ".json"

    def handle_output(self, context, obj):
        import os

        os.makedirs(self.root, exist_ok=True)
        with open(self._path(context.asset_key), "w") as f:
            json.dump(obj, f)

    def load_input(self, context):
        with open(self._path(context.asset_key)) as f:
            return json.load(f)


def project(tmp_path, summary_io: str, raw_io: str = "io_manager", read_only=()):
    gate = {"entered": threading.Event(), "release": threading.Event(), "calls": []}
    gate["release"].set()

    @asset(code_version="1", io_manager_key=raw_io)
    def raw() -> list:
        return [1, 2, 3]

    @asset(code_version="1", op_tags=NONCRIT, io_manager_key=summary_io)
    @shadow_reusable
    def summary(context, raw: list) -> dict:
        shadow = is_shadow_run(context.run.tags)
        gate["calls"].append("shadow" if shadow else "live")
        if shadow:
            gate["entered"].set()
            assert gate["release"].wait(60)
        return {"sum": sum(raw), "n": len(raw)}

    assets = guard_assets([raw, summary])
    resources = {"io_manager": FilesystemIOManager(base_dir=str(tmp_path / "live")),
                 "json": JsonIOManager(root=str(tmp_path / "live_json"))}
    jobs = [define_asset_job("daily", selection=["raw", "summary"]), shadow_job(assets, read_only_resources=read_only)]
    defs = Definitions(assets=assets, jobs=jobs, resources=resources)
    return defs, gate


def request(assets=("summary",)):
    return shadow_request(assets, prediction_id="p-any")


def live_files(tmp_path) -> dict:
    return {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.glob("live*/**/*") if p.is_file()}


def materialize(defs, instance, keys):
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[AssetKey(k) for k in keys])


def test_dagster_filesystem_io_manager_is_pre_executed_and_reused(instance, tmp_path):
    defs, gate = project(tmp_path, "io_manager")
    (info,) = [i for a, i in build_catalog(defs.get_repository_def()).items() if a.endswith("/summary")]
    assert not info.critical and info.refusal is None                 # eligible as it is
    materialize(defs, instance, ["raw"])
    before = live_files(tmp_path)
    gate["release"].clear()
    out = {}
    thread = threading.Thread(target=lambda: out.update(r=execute_shadow_request(defs, request(), instance)))
    thread.start()
    try:
        assert gate["entered"].wait(60)
        assert live_files(tmp_path) == before                          # while the shadow run runs
    finally:
        gate["release"].set()
        thread.join()
    assert out["r"].success and live_files(tmp_path) == before         # after: nothing written live
    live = materialize(defs, instance, ["summary"])
    assert live.asset_materializations_for_node("summary")[0].metadata[REUSED_FROM].value == out["r"].run_id
    assert gate["calls"] == ["shadow"]                                 # reused, not recomputed
    # the live file is FilesystemIOManager's own, byte for byte what computing would have written
    assert (tmp_path / "live" / "summary").read_bytes() == pickle.dumps({"sum": 6, "n": 3}, 4)


def test_a_users_own_io_manager_never_sees_a_shadow_output_and_receives_the_reused_value(instance, tmp_path):
    defs, gate = project(tmp_path, "json")
    (info,) = [i for a, i in build_catalog(defs.get_repository_def()).items() if a.endswith("/summary")]
    assert info.refusal is None                                        # outputs never reach it in a shadow run
    materialize(defs, instance, ["raw"])
    shadow = execute_shadow_request(defs, request(), instance)
    assert shadow.success and not (tmp_path / "live_json").exists()    # the user's IO manager was not called
    live = materialize(defs, instance, ["summary"])
    assert live.asset_materializations_for_node("summary")[0].metadata[REUSED_FROM].value == shadow.run_id
    assert gate["calls"] == ["shadow"]
    assert json.loads((tmp_path / "live_json" / "summary.json").read_text()) == {"sum": 6, "n": 3}


def test_an_input_read_through_an_io_manager_with_possible_side_effects_is_refused(instance, tmp_path):
    defs, gate = project(tmp_path, "io_manager", raw_io="json")
    (info,) = [i for a, i in build_catalog(defs.get_repository_def()).items() if a.endswith("/summary")]
    assert info.refusal and "'json'" in info.refusal
    materialize(defs, instance, ["raw"])
    refused = execute_shadow_request(defs, request(), instance, raise_on_error=False)
    assert not refused.success and gate["calls"] == []                 # refused before the body
    # declared read-only by the user: eligible, executed, reused
    defs, gate = project(tmp_path, "io_manager", raw_io="json", read_only=["json"])
    (info,) = [i for a, i in build_catalog(defs.get_repository_def()).items() if a.endswith("/summary")]
    assert info.refusal is None
    shadow = execute_shadow_request(defs, request(), instance)
    assert shadow.success and gate["calls"] == ["shadow"]
    live = materialize(defs, instance, ["summary"])
    assert live.asset_materializations_for_node("summary")[0].metadata[REUSED_FROM].value == shadow.run_id


def test_an_output_without_a_provenance_key_is_kept_as_scratch_through_the_stand_in(instance, tmp_path):
    """An asset with no code version has no provenance key: with the user's own IO manager its shadow
    output goes to the run's scratch space, never to the user's IO manager or live storage."""
    @asset(code_version="1")
    def raw() -> list:
        return [1, 2, 3]

    @asset(op_tags=NONCRIT, io_manager_key="json")          # no code_version: never reusable
    def unversioned(raw: list) -> int:
        return sum(raw)

    assets = guard_assets([raw, unversioned])
    defs = Definitions(assets=assets, jobs=[shadow_job(assets)], resources={
        "io_manager": FilesystemIOManager(base_dir=str(tmp_path / "live")),
        "json": JsonIOManager(root=str(tmp_path / "live_json"))})
    materialize(defs, instance, ["raw"])
    before = live_files(tmp_path)
    shadow = execute_shadow_request(defs, request(["unversioned"]), instance)
    assert shadow.success and live_files(tmp_path) == before and not (tmp_path / "live_json").exists()
