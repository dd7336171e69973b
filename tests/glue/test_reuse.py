"""Reuse in real Dagster runs (index on SQLite and PostgreSQL): hits, every mismatch, spoofing, crashes."""

import os
import pickle
import subprocess
import sys
import textwrap

import pytest
from dagster import Config, StaticPartitionsDefinition, asset, materialize

from shadow_dagster.dagster.io_manager import ShadowIOManager
from shadow_dagster.dagster.reuse import shadow_reusable
from shadow_dagster.store.outputs import PROMOTED, ShadowOutputStore, delete_shadow_outputs
from shadow_dagster.tags import CRITICAL_TAG, PREDICTION_TAG, REUSED_FROM, SECONDS_SAVED, SHADOW_TAG

SHADOW = {SHADOW_TAG: "true", PREDICTION_TAG: "pred-1"}
NONCRIT = {CRITICAL_TAG: "false"}
PARTS = StaticPartitionsDefinition(["a", "b"])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'index.db'}" if request.param == "sqlite" else \
        request.getfixturevalue("pg_schema_url")
    live, shadow = tmp_path / "live", tmp_path / "shadow"
    live.mkdir()
    resources = {"io_manager": ShadowIOManager(base_dir=str(live), shadow_dir=str(shadow), store_url=url)}
    store = ShadowOutputStore(shadow, url)
    yield live, resources, store
    store.dispose()


class Up(Config):
    n: int = 3


class Scale(Config):
    factor: int = 2


def make_assets(calls, code_version="1", partitioned=False):
    pdef = PARTS if partitioned else None

    @asset(code_version="1", partitions_def=pdef, op_tags=NONCRIT)
    def upstream(config: Up) -> list:
        return list(range(config.n))

    @asset(code_version=code_version, partitions_def=pdef, op_tags=NONCRIT)
    @shadow_reusable
    def derived(config: Scale, upstream: list) -> list:
        calls.append(config.factor)
        return [x * config.factor for x in upstream]

    return [upstream, derived]


def cfg(n=3, factor=2):
    return {"ops": {"upstream": {"config": {"n": n}}, "derived": {"config": {"factor": factor}}}}


def run(instance, assets, resources, selection, tags=None, **kw):
    config = kw.pop("run_config", cfg())
    config = {"ops": {k: v for k, v in config["ops"].items() if k in selection}}
    res = materialize(assets, instance=instance, resources=resources, selection=selection, tags=tags or {},
                      run_config=config, **kw)
    assert res.success
    return res


def derived_event(res):
    return res.asset_materializations_for_node("derived")[0]


def test_live_run_reuses_a_matching_shadow_output(instance, env):
    live, resources, store = env
    calls = []
    assets = make_assets(calls)
    run(instance, assets, resources, ["upstream"])
    shadow = run(instance, assets, resources, ["derived"], SHADOW)
    assert calls == [2] and not (live / "derived").exists()

    hit = run(instance, assets, resources, ["derived"])
    assert calls == [2]  # the body did not run
    mat = derived_event(hit)
    assert mat.metadata[REUSED_FROM].value == shadow.run_id
    assert mat.metadata[SECONDS_SAVED].value > 0
    assert pickle.loads((live / "derived").read_bytes()) == [0, 2, 4]
    (row,) = store.list(run_id=shadow.run_id)
    assert row.status == PROMOTED and (live / "derived").read_bytes() == store.read(row)

    reused_bytes = (live / "derived").read_bytes()
    assert delete_shadow_outputs(store, prediction_id="pred-1") == 1
    recompute = run(instance, assets, resources, ["derived"])
    assert calls == [2, 2] and REUSED_FROM not in derived_event(recompute).metadata
    assert (live / "derived").read_bytes() == reused_bytes
    assert derived_event(recompute).tags["dagster/data_version"] == mat.tags["dagster/data_version"]
    assert derived_event(recompute).tags["dagster/input_data_version/upstream"] == \
        mat.tags["dagster/input_data_version/upstream"]


@pytest.mark.parametrize("partitioned", [False, True], ids=["unpartitioned", "partitioned"])
def test_a_chain_computed_in_one_shadow_run_is_reused_step_after_step(instance, env, partitioned):
    """The shadow run computes derived and, from that shadow value, final. The live run reuses
    derived; final's input is then the live materialization standing for the shadow one, so final
    keys as it did in the shadow run and is reused too. Recomputed, it would not be."""
    live, resources, store = env
    calls = []
    upstream, derived = make_assets(calls, partitioned=partitioned)
    pdef = PARTS if partitioned else None

    @asset(code_version="1", partitions_def=pdef, op_tags=NONCRIT)
    @shadow_reusable
    def final(derived: list) -> int:
        calls.append("final")
        return sum(derived)

    assets, kw = [upstream, derived, final], ({"partition_key": "a"} if partitioned else {})
    run(instance, assets, resources, ["upstream"], **kw)
    shadow = run(instance, assets, resources, ["derived", "final"], SHADOW, **kw)
    assert calls == [2, "final"] and not (live / "final").exists()
    hit = run(instance, assets, resources, ["derived", "final"], **kw)
    assert calls == [2, "final"]                         # neither body ran in the live run
    final_mat = hit.asset_materializations_for_node("final")[0]
    assert final_mat.metadata[REUSED_FROM].value == shadow.run_id
    path = live / "final" / "a" if partitioned else live / "final"
    assert pickle.loads(path.read_bytes()) == 6
    # a live derived computed with other config gives final another input: final is recomputed
    run(instance, assets, resources, ["derived"], run_config=cfg(factor=3), **kw)
    again = run(instance, assets, resources, ["final"], **kw)
    assert calls == [2, "final", 3, "final"] and REUSED_FROM not in again.asset_materializations_for_node(
        "final")[0].metadata
    assert pickle.loads(path.read_bytes()) == 9


@pytest.mark.parametrize("claim", ["not a key", 10**12, "AB" * 32, "ab" * 31, True])
def test_a_reuse_claim_in_user_metadata_never_breaks_or_fools_the_key(instance, env, claim):
    """An upstream whose own metadata carries malformed reuse entries is keyed by its own event: live
    steps downstream neither fail nor match another event's output."""
    from dagster import Output

    from shadow_dagster.tags import PROVENANCE_KEY

    _, resources, _ = env
    calls = []

    @asset(code_version="1", op_tags=NONCRIT)
    def upstream() -> Output[list]:
        return Output([1, 2], metadata={PROVENANCE_KEY: claim, REUSED_FROM: "someone"})

    @asset(code_version="1", op_tags=NONCRIT)
    @shadow_reusable
    def derived(upstream: list) -> list:
        calls.append(1)
        return upstream[::-1]

    assets = [upstream, derived]
    materialize(assets, instance=instance, resources=resources)
    materialize(assets, instance=instance, resources=resources, selection=["derived"], tags=SHADOW)
    hit = materialize(assets, instance=instance, resources=resources, selection=["derived"])
    assert calls == [1, 1] and REUSED_FROM in derived_event(hit).metadata
    materialize(assets, instance=instance, resources=resources, selection=["upstream"])   # a new event
    again = materialize(assets, instance=instance, resources=resources, selection=["derived"])
    assert calls == [1, 1, 1] and REUSED_FROM not in derived_event(again).metadata


def test_user_data_version_is_replayed_on_reuse(instance, env):
    from dagster import DataVersion, Output

    from shadow_dagster.speculation.provenance import content_hash

    live, resources, _ = env
    calls = []

    @asset(code_version="1", op_tags=NONCRIT)
    def upstream() -> list:
        return [1, 2]

    @asset(code_version="1", op_tags=NONCRIT)
    @shadow_reusable
    def derived(upstream: list) -> Output[list]:
        calls.append(1)
        value = upstream[::-1]
        return Output(value, data_version=DataVersion(content_hash(pickle.dumps(value))))

    assets = [upstream, derived]
    materialize(assets, instance=instance, resources=resources)
    materialize(assets, instance=instance, resources=resources, selection=["derived"], tags=SHADOW)
    hit = materialize(assets, instance=instance, resources=resources, selection=["derived"])
    assert calls == [1, 1] and REUSED_FROM in derived_event(hit).metadata
    assert derived_event(hit).tags["dagster/data_version"] == content_hash(pickle.dumps([2, 1]))


@pytest.mark.parametrize("mismatch", ["input data", "code version", "config", "partition"])
def test_each_mismatch_recomputes(instance, env, mismatch):
    live, resources, store = env
    calls = []
    partitioned = mismatch == "partition"
    assets = make_assets(calls, partitioned=partitioned)
    pk = {"partition_key": "a"} if partitioned else {}
    run(instance, assets, resources, ["upstream"], **pk)
    if partitioned:
        run(instance, assets, resources, ["upstream"], partition_key="b")
    run(instance, assets, resources, ["derived"], SHADOW, **pk)
    assert calls == [2] and len(store.list(status="complete")) == 1

    live_kw = dict(pk)
    if mismatch == "input data":
        run(instance, assets, resources, ["upstream"], run_config=cfg(n=4))
        live_kw["run_config"] = cfg(n=4)
    elif mismatch == "code version":
        assets = make_assets(calls, code_version="2")
    elif mismatch == "config":
        live_kw["run_config"] = cfg(factor=5)
    else:
        live_kw["partition_key"] = "b"
    res = run(instance, assets, resources, ["derived"], **live_kw)
    assert len(calls) == 2 and REUSED_FROM not in derived_event(res).metadata
    assert store.list(status=PROMOTED) == []


def test_other_partitions_materialised_in_between_do_not_change_the_key(instance, env):
    """Under load, other instances materialise other partitions of the input between the shadow run
    and the live step: the key pins the partition read, not the asset's latest event."""
    live, resources, store = env
    calls = []
    assets = make_assets(calls, partitioned=True)
    run(instance, assets, resources, ["upstream"], partition_key="a")
    shadow = run(instance, assets, resources, ["derived"], SHADOW, partition_key="a")
    run(instance, assets, resources, ["upstream"], partition_key="b", run_config=cfg(n=5))
    hit = run(instance, assets, resources, ["derived"], partition_key="a")
    assert calls == [2] and derived_event(hit).metadata[REUSED_FROM].value == shadow.run_id
    assert pickle.loads((live / "derived" / "a").read_bytes()) == [0, 2, 4]


def test_rematerialised_input_partition_recomputes(instance, env):
    """Same code, same config: the logical data version of upstream[a] is unchanged, but it is a new
    materialization, so the shadow output computed from the old one is not reused."""
    live, resources, store = env
    calls = []
    assets = make_assets(calls, partitioned=True)
    run(instance, assets, resources, ["upstream"], partition_key="a")
    run(instance, assets, resources, ["derived"], SHADOW, partition_key="a")
    run(instance, assets, resources, ["upstream"], partition_key="a")
    res = run(instance, assets, resources, ["derived"], partition_key="a")
    assert calls == [2, 2] and REUSED_FROM not in derived_event(res).metadata
    assert store.list(status=PROMOTED) == []


def test_input_partition_from_a_shadow_run_refuses_reuse(instance, env):
    """upstream[a] was last written by a shadow run (shadow storage), upstream[b] by a live run: the
    producer check looks at partition a's producer, not the asset's latest event."""
    live, resources, store = env
    calls = []
    assets = make_assets(calls, partitioned=True)
    run(instance, assets, resources, ["upstream"], partition_key="a")
    run(instance, assets, resources, ["upstream", "derived"], SHADOW, partition_key="a", run_config=cfg(n=5))
    run(instance, assets, resources, ["upstream"], partition_key="b")
    res = run(instance, assets, resources, ["derived"], partition_key="a")
    assert calls == [2, 2] and REUSED_FROM not in derived_event(res).metadata
    assert pickle.loads((live / "derived" / "a").read_bytes()) == [0, 2, 4]
    logs = [e.message for e in instance.all_logs(res.run_id) if e.message]
    assert any("was last materialised by shadow run" in m for m in logs), logs


def test_spoofed_or_tampered_shadow_output_is_not_reused(instance, env):
    live, resources, store = env
    calls = []
    assets = make_assets(calls)
    run(instance, assets, resources, ["upstream"])
    # a hand-launched "shadow" run with other config: its provenance differs from the live step's
    run(instance, assets, resources, ["derived"], SHADOW, run_config=cfg(factor=9))
    # a matching shadow output whose file is then replaced by a forged value
    shadow = run(instance, assets, resources, ["derived"], SHADOW)
    (row,) = store.list(run_id=shadow.run_id)
    row.path.write_bytes(pickle.dumps(["forged"], 4))
    res = run(instance, assets, resources, ["derived"])
    assert calls == [9, 2, 2] and REUSED_FROM not in derived_event(res).metadata
    assert pickle.loads((live / "derived").read_bytes()) == [0, 2, 4]


def test_inputs_from_a_shadow_run_refuse_reuse(instance, env):
    live, resources, store = env
    calls = []
    assets = make_assets(calls)
    run(instance, assets, resources, ["upstream"])
    # shadow run recomputes upstream (n=5) and derived from it; live upstream is still n=3
    run(instance, assets, resources, ["upstream", "derived"], SHADOW, run_config=cfg(n=5))
    assert calls == [2]
    res = run(instance, assets, resources, ["derived"])
    assert calls == [2, 2] and REUSED_FROM not in derived_event(res).metadata
    assert pickle.loads((live / "derived").read_bytes()) == [0, 2, 4]


PROMOTE_CRASH = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from dagster import DagsterInstance, materialize
    import test_reuse as t
    from shadow_dagster.dagster.io_manager import ShadowIOManager
    from shadow_dagster.speculation import atomic
    live, shadow, url = sys.argv[2:5]
    calls = []
    resources = {"io_manager": ShadowIOManager(base_dir=live, shadow_dir=shadow, store_url=url)}
    real_replace = os.replace
    def die(src, dst):
        if os.path.basename(str(dst)) == "derived":
            os._exit(9)  # killed in the middle of promotion, after the temp copy, before the rename
        return real_replace(src, dst)
    atomic.os.replace = die
    materialize(t.make_assets(calls), instance=DagsterInstance.get(), resources=resources,
                selection=["derived"], run_config={"ops": {"derived": t.cfg()["ops"]["derived"]}})
""")


def test_promotion_killed_midway_leaves_the_old_live_file(instance, env, tmp_path):
    live, resources, store = env
    calls = []
    assets = make_assets(calls)
    run(instance, assets, resources, ["upstream", "derived"])
    old = (live / "derived").read_bytes()
    run(instance, assets, resources, ["upstream"], run_config=cfg(n=4))
    run(instance, assets, resources, ["derived"], SHADOW, run_config=cfg(n=4))
    io = resources["io_manager"]
    proc = subprocess.run(
        [sys.executable, "-c", PROMOTE_CRASH, os.path.dirname(__file__), io.base_dir, io.shadow_dir, io.store_url],
        capture_output=True, text=True, timeout=120, env={**os.environ})
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert (live / "derived").read_bytes() == old  # old, complete; never partial
    assert pickle.loads(old) == [0, 2, 4]
    res = run(instance, assets, resources, ["derived"], run_config=cfg(n=4))  # a clean retry promotes
    assert REUSED_FROM in derived_event(res).metadata and calls == [2, 2]
    assert pickle.loads((live / "derived").read_bytes()) == [0, 2, 4, 6]
