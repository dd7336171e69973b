"""Provenance keys: deterministic, sensitive to every part, refused when a part is unknown."""

import pytest

from shadow_dagster import __version__
from shadow_dagster.speculation.provenance import (
    ProvenanceUnknown,
    content_hash,
    provenance_key,
    try_provenance_key,
)

BASE = dict(asset_key="sales/daily", partition_key="2024-01-01", code_version="v1",
            input_data_versions={"orders": "abc", "customers": "def"}, config={"limit": 10, "mode": "x"})


def test_key_is_stable_and_independent_of_input_and_config_order():
    k1 = provenance_key(**BASE)
    k2 = provenance_key(**{**BASE, "input_data_versions": {"customers": "def", "orders": "abc"},
                           "config": {"mode": "x", "limit": 10}})
    assert k1 == k2 and len(k1) == 64 and int(k1, 16) >= 0


@pytest.mark.parametrize("change", [
    {"asset_key": "sales/weekly"},
    {"partition_key": "2024-01-02"},
    {"partition_key": None},
    {"code_version": "v2"},
    {"input_data_versions": {"orders": "abc", "customers": "xyz"}},
    {"input_data_versions": {"orders": "abc"}},
    {"input_data_versions": {"orders": "abc", "customers": "def", "extra": "1"}},
    {"config": {"limit": 11, "mode": "x"}},
    {"config": None},
    {"library_version": __version__ + ".post1"},
])
def test_every_part_changes_the_key(change):
    assert provenance_key(**{**BASE, **change}) != provenance_key(**BASE)


@pytest.mark.parametrize("change, needle", [
    ({"code_version": None}, "code version"),
    ({"code_version": ""}, "code version"),
    ({"input_data_versions": {"orders": None}}, "orders"),
    ({"input_data_versions": {"orders": "UNKNOWN"}}, "orders"),
    ({"input_data_versions": {"orders": "NULL"}}, "orders"),
    ({"config": {"f": float("nan")}}, "non-finite"),
    ({"config": {"f": object()}}, "JSON"),
    ({"asset_key": ""}, "asset key"),
    ({"partition_key": 3}, "partition"),
])
def test_unknown_parts_refuse_the_key(change, needle):
    with pytest.raises(ProvenanceUnknown) as err:
        provenance_key(**{**BASE, **change})
    assert needle in err.value.reason
    key, reason = try_provenance_key(**{**BASE, **change})
    assert key is None and needle in reason


def test_content_hash_is_sha256_and_rejects_non_bytes():
    assert content_hash(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    with pytest.raises(TypeError):
        content_hash("text")
