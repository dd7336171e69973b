"""Isolation in real Dagster runs: shadow runs never touch live storage; critical steps never run."""

import os

import pytest
from dagster import AssetKey, Config, FilesystemIOManager, asset, materialize

from shadow_dagster.dagster.critical import critical_guard, guard_assets
from shadow_dagster.dagster.io_manager import ShadowIOManager
from shadow_dagster.dagster.reuse import shadow_reusable
from shadow_dagster.speculation.isolation import ShadowIsolationError
from shadow_dagster.store.outputs import ShadowOutputStore
from shadow_dagster.tags import CRITICAL_TAG, PREDICTION_TAG, SHADOW_TAG

SHADOW = {SHADOW_TAG: "true", PREDICTION_TAG: "pred-1"}
NONCRIT = {CRITICAL_TAG: "false"}


def snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def failure_text(result, node):
    data = result.failure_data_for_node(node)
    return "" if data is None else data.error.to_string()


@pytest.fixture
def dirs(tmp_path):
    live, shadow = tmp_path / "live", tmp_path / "shadow"
    live.mkdir()
    return live, shadow


def io(dirs):
    live, shadow = dirs
    return {"io_manager": ShadowIOManager(base_dir=str(live), shadow_dir=str(shadow),
                                          store_url=f"sqlite:///{shadow.parent / 'index.db'}")}


class Up(Config):
    n: int = 3


@asset(code_version="1")
def upstream(config: Up) -> list:
    return list(range(config.n))


@asset(code_version="1", op_tags=NONCRIT)
@shadow_reusable
def mid(upstream: list) -> list:
    return [x + 1 for x in upstream]


@asset(code_version="1", tags=NONCRIT)  # an asset tag marks it non-critical too
def derived(mid: list) -> int:
    return sum(mid)


ASSETS = [upstream, mid, derived]


def test_shadow_run_writes_only_under_the_shadow_root(instance, dirs):
    live, shadow = dirs
    assert materialize(ASSETS, instance=instance, resources=io(dirs)).success
    before = snapshot(live)
    res = materialize(ASSETS, instance=instance, resources=io(dirs), selection=["mid", "derived"], tags=SHADOW)
    assert res.success
    assert snapshot(live) == before
    store = ShadowOutputStore(shadow, f"sqlite:///{shadow.parent / 'index.db'}")
    rows = {o.asset_key: o for o in store.list(run_id=res.run_id)}
    assert set(rows) == {"mid", "derived"} and all(o.status == "complete" for o in rows.values())
    import pickle
    assert pickle.loads(store.read(rows["derived"])) == 6  # derived read mid from this shadow run
    assert all(str(o.path).startswith(str(shadow)) for o in rows.values())
    store.dispose()


def test_live_run_writes_what_filesystem_io_manager_writes(instance, dirs, tmp_path):
    plain = tmp_path / "plain"
    assert materialize(ASSETS, instance=instance, resources=io(dirs)).success
    assert materialize(ASSETS, instance=instance,
                       resources={"io_manager": FilesystemIOManager(base_dir=str(plain))}).success
    assert snapshot(dirs[0]) == snapshot(plain) and len(snapshot(plain)) == 3


def test_shadow_write_resolving_into_live_storage_raises(instance, dirs):
    live, shadow = dirs
    assert materialize(ASSETS, instance=instance, resources=io(dirs)).success
    before = snapshot(live)
    shadow.mkdir()
    os.symlink(live, shadow / "objects")  # symlink trick: the shadow object dir points into live storage
    res = materialize(ASSETS, instance=instance, resources=io(dirs), selection=["mid"], tags=SHADOW,
                      raise_on_error=False)
    assert not res.success and "ShadowIsolationError" in failure_text(res, "mid")
    assert snapshot(live) == before


def test_shadow_root_inside_live_root_is_refused(instance, dirs):
    live, _ = dirs
    assert materialize(ASSETS, instance=instance, resources=io(dirs)).success
    before = snapshot(live)
    bad = {"io_manager": ShadowIOManager(base_dir=str(live), shadow_dir=str(live / "shadow"),
                                         store_url=f"sqlite:///{live.parent / 'index.db'}")}
    with pytest.raises(Exception) as err:
        materialize(ASSETS, instance=instance, resources=bad, selection=["mid"], tags=SHADOW)
    assert isinstance(err.value.__cause__, ShadowIsolationError) and "overlap" in str(err.value.__cause__)
    assert snapshot(live) == before


def make_critical_assets(marker_dir):
    def touch(name):
        (marker_dir / name).write_text("side effect")

    @asset(code_version="1")
    def publish_plain() -> int:  # critical, no inputs, not decorated: guarded only by guard_assets
        touch("publish_plain")
        return 1

    @asset(code_version="1")
    @shadow_reusable
    def publish_decorated() -> int:  # critical by default, decorated
        touch("publish_decorated")
        return 2

    @asset(code_version="1")
    @critical_guard
    def publish_guarded() -> int:
        touch("publish_guarded")
        return 3

    @asset(code_version="1")
    def email(publish_plain: int) -> int:  # critical with an input: the IO manager refuses to load it
        touch("email")
        return publish_plain

    return [publish_plain, publish_decorated, publish_guarded, email]


@pytest.mark.parametrize("node", ["publish_plain", "publish_decorated", "publish_guarded", "email"])
def test_critical_step_in_shadow_run_raises_before_its_body(instance, dirs, tmp_path, node):
    marker = tmp_path / "markers"
    marker.mkdir()
    assets = make_critical_assets(marker)
    assert materialize(assets, instance=instance, resources=io(dirs)).success  # live: all run
    assert sorted(os.listdir(marker)) == sorted(a.key.to_user_string() for a in assets)
    for f in marker.iterdir():
        f.unlink()
    res = materialize(guard_assets(assets) if node == "publish_plain" else assets, instance=instance,
                      resources=io(dirs), selection=[node], tags=SHADOW, raise_on_error=False)
    assert not res.success and "ShadowCriticalStepError" in failure_text(res, node)
    assert os.listdir(marker) == []  # the body never ran


def test_unguarded_critical_step_without_inputs_cannot_store_its_output(instance, dirs, tmp_path):
    marker = tmp_path / "markers"
    marker.mkdir()
    publish_plain = make_critical_assets(marker)[0]
    res = materialize([publish_plain], instance=instance, resources=io(dirs), tags=SHADOW, raise_on_error=False)
    assert not res.success and "ShadowCriticalStepError" in failure_text(res, "publish_plain")
    assert not os.listdir(dirs[0])  # nothing reached live storage (use guard_assets to stop the body too)


def test_guard_assets_keeps_live_behaviour(instance, dirs, tmp_path):
    marker = tmp_path / "markers"
    marker.mkdir()
    guarded = guard_assets(make_critical_assets(marker))
    res = materialize(guarded, instance=instance, resources=io(dirs))
    assert res.success and res.output_for_node("email") == 1
    assert instance.get_latest_materialization_event(AssetKey("publish_plain")) is not None
