"""The shadow output store on SQLite and PostgreSQL: atomic writes, verification, crashes, rollback."""

import os
import subprocess
import sys
import textwrap

import pytest

from shadow_dagster.speculation.atomic import ContentMismatch
from shadow_dagster.speculation.isolation import ShadowIsolationError
from shadow_dagster.speculation.object_paths import may_hold
from shadow_dagster.store.outputs import (
    COMPLETE,
    DELETED,
    WRITTEN,
    ShadowOutputStore,
    delete_shadow_outputs,
)

K1, K2, K3 = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def live(tmp_path):
    d = tmp_path / "live"
    d.mkdir()
    (d / "asset").write_bytes(b"live bytes")
    return d


@pytest.fixture
def store(tmp_path, store_url, live):
    s = ShadowOutputStore(tmp_path / "shadow", store_url, forbidden_roots=[live])
    yield s
    s.dispose()


def _write(store, key, payload=b"payload", run="run-1", prediction="p-1", **kw):
    return store.write(key, payload, asset_key="asset", partition_key=kw.pop("partition", None),
                       run_id=run, prediction_id=prediction, compute_seconds=1.5, **kw)


def test_write_is_complete_and_read_back_verified(store):
    out = _write(store, K1, data_version="dv1")
    assert out.status == COMPLETE and out.size_bytes == 7 and out.data_version == "dv1"
    assert out.path.read_bytes() == b"payload" and str(out.path).startswith(str(store.root))
    assert store.read(store.get_reusable(K1)) == b"payload"
    assert store.find_for_run("run-1", "asset", None).provenance_key == K1
    assert store.find_for_run("run-2", "asset", None) is None
    assert not list(store.root.rglob(".shadow-tmp-*"))


def test_may_hold_tells_without_the_database_which_keys_have_no_payload(store):
    """The live reuse check opens no store for a key with no payload file (the usual case)."""
    assert not may_hold(store.root, K1)                  # an empty store: not even its folders exist
    _write(store, K1)
    assert may_hold(store.root, K1) and not may_hold(store.root, K2)
    assert not may_hold(store.root, "a" * 63)            # a prefix of a key is another key
    delete_shadow_outputs(store, run_id="run-1")
    assert not may_hold(store.root, K1) and store.get_reusable(K1) is None


def test_tampered_file_fails_verification(store):
    out = _write(store, K1)
    out.path.write_bytes(b"payloaX")
    with pytest.raises(ContentMismatch):
        store.read(store.get_reusable(K1))
    out.path.unlink()
    with pytest.raises(FileNotFoundError):
        store.read(store.get_reusable(K1))


def test_bad_input_is_refused(store):
    with pytest.raises(ValueError, match="64 lowercase hex"):
        _write(store, "short")
    with pytest.raises(TypeError, match="bytes"):
        _write(store, K1, payload="text")
    with pytest.raises(ValueError, match="exactly one"):
        store.delete_outputs()
    with pytest.raises(ValueError, match="status"):
        store.list(status="bogus")


def test_write_through_a_symlink_into_live_storage_is_refused(store, live):
    (store.root / "objects").mkdir(parents=True)
    os.symlink(live, store.root / "objects" / K1[:2])
    before = {p.name: p.read_bytes() for p in live.iterdir()}
    with pytest.raises(ShadowIsolationError, match="inside live storage"):
        _write(store, K1)
    assert {p.name: p.read_bytes() for p in live.iterdir()} == before
    assert store.get_reusable(K1) is None


def test_rollback_by_prediction_and_by_run(store):
    a, b, c = _write(store, K1, prediction="p-1"), _write(store, K2, prediction="p-1"), \
        _write(store, K3, run="run-2", prediction="p-2")
    assert delete_shadow_outputs(store, prediction_id="p-1") == 2
    assert not a.path.exists() and not b.path.exists() and c.path.exists()
    assert [o.provenance_key for o in store.list(status=DELETED)] == [K1, K2]
    assert store.get_reusable(K1) is None
    assert store.delete_outputs(run_id="run-2") == 1 and not c.path.exists()
    assert store.delete_outputs(run_id="run-2") == 0


CRASH = textwrap.dedent("""
    import os, sys
    from shadow_dagster.speculation import atomic
    from shadow_dagster.store.outputs import ShadowOutputStore
    root, url, key, where = sys.argv[1:5]
    store = ShadowOutputStore(root, url)
    def die(*a, **k):
        os._exit(9)   # the process dies here, as if killed: no cleanup, no exception handlers
    setattr(atomic.os if where == "replace" else atomic, where if where != "replace" else "replace", die)
    store.write(key, b"new payload that never lands", asset_key="asset", partition_key=None,
                run_id="run-crash")
""")


def _crash(tmp_path, store, key, where):
    proc = subprocess.run([sys.executable, "-c", CRASH, str(store.root), store.url, key, where],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr


@pytest.mark.parametrize("where", ["replace", "fsync_dir"])
def test_writer_killed_mid_write_leaves_no_complete_output(tmp_path, store, where):
    _crash(tmp_path, store, K1, where)  # killed before os.replace, or after it but before the commit
    row = store.get(K1)
    assert row is not None and row.status == WRITTEN and row.content_hash is None
    assert store.get_reusable(K1) is None
    finals = [p for p in (store.root / "objects").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(finals) == (1 if where == "fsync_dir" else 0)
    assert store.gc(older_than_s=0) >= 1
    assert not [p for p in (store.root / "objects").rglob("*") if p.is_file()]


def test_crash_while_rewriting_keeps_the_previous_complete_output(tmp_path, store):
    old = _write(store, K1, payload=b"old payload")
    _crash(tmp_path, store, K1, "replace")
    out = store.get_reusable(K1)
    assert out is not None and out.run_id == old.run_id and store.read(out) == b"old payload"
