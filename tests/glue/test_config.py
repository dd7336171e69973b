"""One typed speculation config and one storage object: validated at load, each location set once."""

import math
import os

import dagster as dg
import pytest

from shadow_dagster import (PolicyConfig, PrepareConfig, ShadowIOManager, ShadowStorage, SignalStoreResource,
                            SpeculationConfig, with_shadow)
from shadow_dagster.dagster.definitions import storage_of
from shadow_dagster.dagster.speculative_sensor import SPECULATIVE_SENSOR_NAME
from shadow_dagster.store.engine import StoreConfigError
from shadow_dagster.tags import CRITICAL_TAG


@dg.asset(code_version="1", op_tags={CRITICAL_TAG: "false"})
def stats() -> int:
    return 1


def test_a_dict_becomes_the_typed_config_with_flat_prepare_settings():
    cfg = SpeculationConfig.from_options({"ttl_s": 1800, "prefetch": True, "warmup_budget_s": 5.0,
                                          "policy": PolicyConfig(ratio=2.0)})
    assert cfg.ttl_s == 1800 and cfg.policy.ratio == 2.0
    assert cfg.prepare == PrepareConfig(prefetch=True, warmup_budget_s=5.0)
    assert SpeculationConfig.from_options(None) == SpeculationConfig()
    assert SpeculationConfig().prepare.prefetch is False          # pre-fetch is opt-in
    assert SpeculationConfig.from_options(cfg) is cfg
    assert SpeculationConfig.from_options({}, report_window_days=7.0).report_window_days == 7.0
    assert SpeculationConfig.from_options({"report_window_days": 3.0}, report_window_days=7.0).report_window_days == 3.0


@pytest.mark.parametrize("options, error, match", [
    ({"ttl": 1}, TypeError, r"unknown speculation option\(s\) 'ttl'; known: .*ttl_s"),
    ({"prefetch": True, "prepare": PrepareConfig()}, TypeError, "prepare=PrepareConfig"),
    ({"policy": {"ratio": 2}}, TypeError, "policy must be a PolicyConfig"),
    ({"horizon": 0}, ValueError, "horizon must be an integer >= 1"),
    ({"ttl_s": -1}, ValueError, "ttl_s must be a finite number of seconds >= 0"),
    ({"retention_s": math.inf}, ValueError, "retention_s"),
    ({"report_interval_s": True}, ValueError, "report_interval_s .* or None"),
    ({"purge": "some"}, ValueError, "purge must be one of"),
    ({"max_tick_share": 0}, ValueError, "max_tick_share"),
    ({"running": "yes"}, ValueError, "running must be True or False"),
    ({"report_window_days": 0}, ValueError, "report_window_days"),
    ({"prefetch_budget_bytes": -1}, ValueError, "prefetch_budget_bytes"),
    ([("ttl_s", 1)], TypeError, "SpeculationConfig or a dict"),
])
def test_bad_speculation_settings_fail_when_the_definitions_load(options, error, match, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(error, match=match):
        with_shadow(dg.Definitions(assets=[stats]), speculation=options)
    assert sorted(os.listdir(tmp_path)) == before            # nothing created


def test_every_location_defaults_from_the_dagster_home_and_nothing_is_created(tmp_path, monkeypatch):
    monkeypatch.delenv("SHADOW_DAGSTER_STORE_URL", raising=False)
    monkeypatch.delenv("SHADOW_DAGSTER_FINGERPRINT_DIR", raising=False)
    where = ShadowStorage().resolved(str(tmp_path))
    root = tmp_path / "shadow_dagster"
    assert where == ShadowStorage(signal_store_url=f"sqlite:///{tmp_path / 'shadow_dagster.db'}",
                                  output_store_url=f"sqlite:///{tmp_path / 'shadow_dagster.db'}",
                                  shadow_dir=str(root / "outputs"), prefetch_dir=str(root / "prefetch"),
                                  fingerprint_dir=str(root / "fingerprints"))
    assert list(tmp_path.iterdir()) == []
    # the IO manager derives its defaults from the same object
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        base, shadow, url, prefetch = ShadowIOManager(base_dir=str(tmp_path / "live")).dirs(instance)
    assert (shadow, url, prefetch) == (where.shadow_dir, where.output_store_url, where.prefetch_dir)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(StoreConfigError, match="shadow_dir has no default without DAGSTER_HOME"):
        ShadowStorage(signal_store_url="sqlite:////tmp/x.db").location("shadow_dir")
    assert ShadowStorage(shadow_dir=str(tmp_path / "s")).location("prefetch_dir") == str(tmp_path / "prefetch")


def test_a_location_is_configured_once_the_io_manager_and_the_storage_must_agree(tmp_path):
    shadow = str(tmp_path / "shadow")
    user = dg.Definitions(assets=[stats], resources={"io_manager": ShadowIOManager(
        base_dir=str(tmp_path / "live"), shadow_dir=shadow, store_url=f"sqlite:///{tmp_path / 'out.db'}")})
    got = storage_of(user, store_url=f"sqlite:///{tmp_path / 'signals.db'}")
    assert (got.shadow_dir, got.output_store_url, got.signal_store_url) == (
        shadow, f"sqlite:///{tmp_path / 'out.db'}", f"sqlite:///{tmp_path / 'signals.db'}")
    # the sensor and the IO manager now settle the same shadow store without saying so twice
    defs = with_shadow(user, store_url=f"sqlite:///{tmp_path / 'signals.db'}")
    assert defs.resolve_sensor_def(SPECULATIVE_SENSOR_NAME)
    with pytest.raises(ValueError, match=r"ShadowIOManager 'io_manager' sets shadow_dir=.*but the storage says"):
        with_shadow(user, storage=ShadowStorage(shadow_dir=str(tmp_path / "elsewhere")))
    with pytest.raises(ValueError, match="store_url sets signal_store_url"):
        storage_of(None, ShadowStorage(signal_store_url="sqlite:////tmp/a.db"), "sqlite:////tmp/b.db")
    with pytest.raises(TypeError, match="storage must be a ShadowStorage"):
        with_shadow(user, storage={"shadow_dir": shadow})
    with pytest.raises(StoreConfigError, match="mysql"):
        ShadowStorage(signal_store_url="mysql://x/y")
    with pytest.raises(TypeError, match="ShadowStorage.shadow_dir must be a string"):
        ShadowStorage(shadow_dir=3)


def test_one_store_per_url_in_a_process_whoever_asks(tmp_path):
    url = f"sqlite:///{tmp_path / 'signals.db'}"
    from_resource = SignalStoreResource(url=url).get_store()
    assert ShadowStorage(signal_store_url=url).signal_store() is from_resource
    out = ShadowStorage(output_store_url=url, shadow_dir=str(tmp_path / "s")).output_store(str(tmp_path / "live"))
    from shadow_dagster.dagster.io_manager import get_store

    assert get_store(str(tmp_path / "s"), url, str(tmp_path / "live")) is out


def test_io_manager_locations_given_as_env_vars_are_read_like_dagster_reads_them(tmp_path, monkeypatch):
    io = ShadowIOManager(base_dir=str(tmp_path / "live"), shadow_dir=dg.EnvVar("SD_TEST_DIR"),
                         store_url=dg.EnvVar("SD_TEST_URL"))
    user = dg.Definitions(assets=[stats], resources={"io_manager": io})
    monkeypatch.delenv("SD_TEST_DIR", raising=False)
    monkeypatch.delenv("SD_TEST_URL", raising=False)
    assert storage_of(user) == ShadowStorage()                  # not set: the defaults, no error
    monkeypatch.setenv("SD_TEST_DIR", str(tmp_path / "shadow"))
    monkeypatch.setenv("SD_TEST_URL", f"sqlite:///{tmp_path / 'out.db'}")
    got = storage_of(user)
    assert (got.shadow_dir, got.output_store_url) == (str(tmp_path / "shadow"), f"sqlite:///{tmp_path / 'out.db'}")
    assert with_shadow(user).resolve_sensor_def(SPECULATIVE_SENSOR_NAME)


def test_the_sensor_looks_for_outputs_where_the_io_manager_writes_them(tmp_path, monkeypatch):
    """A signal store elsewhere (`store_url`) moves neither the IO manager's output index nor the sensor's."""
    monkeypatch.delenv("SHADOW_DAGSTER_STORE_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    user = dg.Definitions(assets=[stats], resources={"io_manager": ShadowIOManager(base_dir=str(tmp_path / "live"))})
    sensor_side = storage_of(user, store_url=f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        _, shadow, url, _ = ShadowIOManager(base_dir=str(tmp_path / "live")).dirs(instance)
    assert (sensor_side.location("shadow_dir"), sensor_side.location("output_store_url")) == (shadow, url)
    assert sensor_side.location("signal_store_url") == f"sqlite:///{tmp_path / 'elsewhere.db'}"


def test_the_same_folder_written_two_ways_is_no_conflict_and_old_location_options_say_where_they_went(tmp_path):
    user = dg.Definitions(assets=[stats], resources={"io_manager": ShadowIOManager(
        base_dir=str(tmp_path / "live"), shadow_dir=str(tmp_path / "shadow") + "/")})
    assert storage_of(user, ShadowStorage(shadow_dir=str(tmp_path / "shadow"))).shadow_dir == str(tmp_path / "shadow")
    with pytest.raises(TypeError, match=r"'shadow_dir': locations are not speculation options; pass "
                                        r"storage=ShadowStorage\(shadow_dir=\.\.\.\)"):
        SpeculationConfig.from_options({"shadow_dir": "/x", "ttl_s": 5})
    assert PrepareConfig(warmup=False).prefetch is False        # pre-fetch stays opt-in however it is built
