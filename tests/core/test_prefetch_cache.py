"""The pure prefetch cache: verified hits, stale sources, tampered blobs, LRU cap, concurrent puts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import pytest

from shadow_dagster.speculation.prefetch import PrefetchCache


def write(path, data: bytes, age_s: float = 5.0):
    path.write_bytes(data)
    t = time.time_ns() - int(age_s * 1e9)
    os.utime(path, ns=(t, t))
    return path


def test_put_file_then_verified_hit(tmp_path):
    src = write(tmp_path / "in.pkl", b"x" * 1000)
    cache = PrefetchCache(tmp_path / "cache", max_bytes=10_000)
    entry = cache.put_file(src)
    assert entry.size == 1000 and entry.digest == hashlib.sha256(b"x" * 1000).hexdigest()
    assert cache.blob_path(entry.digest).read_bytes() == b"x" * 1000
    assert cache.get_file(src) == b"x" * 1000
    st = os.stat(src)
    assert cache.get(str(src), st.st_size, st.st_mtime_ns) == b"x" * 1000
    assert cache.get(str(src), st.st_size, st.st_mtime_ns + 1) is None     # another identity: no bytes
    assert cache.lookup(str(src)) is None                                  # ...and the entry is dropped
    with pytest.raises(FileNotFoundError):
        cache.get_file(tmp_path / "missing")


def test_rewritten_source_is_stale(tmp_path):
    src = write(tmp_path / "in.pkl", b"old value")
    cache = PrefetchCache(tmp_path / "cache")
    cache.put_file(src)
    write(src, b"new value, longer", age_s=1.0)          # new size and mtime
    assert cache.get_file(src) is None
    write(src, b"new value!", age_s=2.0)
    assert cache.put_file(src) is not None
    write(src, b"NEW VALUE!", age_s=3.0)                  # same size, other mtime
    assert cache.get_file(src) is None and cache.entries() == []


def test_tampered_or_truncated_blob_is_never_served(tmp_path):
    cache = PrefetchCache(tmp_path / "cache")
    for damage in (lambda p: p.write_bytes(b"forged bytes"), lambda p: p.write_bytes(p.read_bytes()[:3]),
                   lambda p: p.unlink()):
        src = write(tmp_path / "in.pkl", b"genuine bytes")
        entry = cache.put_file(src)
        damage(cache.blob_path(entry.digest))
        assert cache.get_file(src) is None
        assert cache.lookup(str(src)) is None
        assert not cache.blob_path(entry.digest).exists()


def test_file_too_fresh_or_changing_is_not_cached(tmp_path):
    cache = PrefetchCache(tmp_path / "cache", min_age_s=30)
    src = write(tmp_path / "in.pkl", b"abc", age_s=1.0)
    assert cache.put_file(src) is None and cache.entries() == []
    assert PrefetchCache(tmp_path / "cache", min_age_s=0.5).put_file(src) is not None


def test_lru_eviction_under_the_cap(tmp_path):
    cache = PrefetchCache(tmp_path / "cache", max_bytes=250)
    srcs = [write(tmp_path / f"in{i}", bytes([i]) * 100) for i in range(3)]
    cache.put_file(srcs[0])
    time.sleep(0.02)
    cache.put_file(srcs[1])
    time.sleep(0.02)
    assert cache.get_file(srcs[0])                        # 0 used last: 1 is the least recently used
    time.sleep(0.02)
    cache.put_file(srcs[2])
    assert {os.path.basename(e.source) for e in cache.entries()} == {"in0", "in2"}
    assert cache.total_bytes() == 200
    assert cache.get_file(srcs[1]) is None
    big = write(tmp_path / "big", b"z" * 251)
    assert cache.put_file(big) is None and cache.total_bytes() == 200   # over the cap: not cached


def test_same_content_shares_one_blob_and_discard_keeps_shared_blobs(tmp_path):
    cache = PrefetchCache(tmp_path / "cache")
    a, b = write(tmp_path / "a", b"same"), write(tmp_path / "b", b"same")
    ea, eb = cache.put_file(a), cache.put_file(b)
    assert ea.digest == eb.digest and cache.total_bytes() == 4
    assert cache.discard(str(a)) is True and cache.discard(str(a)) is False
    assert cache.get_file(b) == b"same"                  # the shared blob stays
    assert cache.discard(str(b)) and cache.total_bytes() == 0


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="max_bytes must be an integer >= 0"):
        PrefetchCache(tmp_path, max_bytes=-1)
    with pytest.raises(ValueError, match="max_bytes"):
        PrefetchCache(tmp_path, max_bytes=1.5)
    with pytest.raises(ValueError, match="root"):
        PrefetchCache("")
    with pytest.raises(ValueError, match="min_age_s"):
        PrefetchCache(tmp_path, min_age_s=-1)
    cache = PrefetchCache(tmp_path)
    with pytest.raises(ValueError, match="does not describe"):
        cache.put("s", b"abc", size=4, mtime_ns=1)
    with pytest.raises(ValueError, match="source"):
        cache.put("", b"abc", size=3, mtime_ns=1)
    with pytest.raises(ValueError, match="mtime_ns"):
        cache.get("s", 3, -5)
    with pytest.raises(TypeError):
        cache.put("s", "text", size=4, mtime_ns=1)


CHILD = """
import sys
from shadow_dagster.speculation.prefetch import PrefetchCache
root, n = sys.argv[1], int(sys.argv[2])
cache = PrefetchCache(root)
data = bytes(range(256)) * 4096
for i in range(n):
    cache.put("shared-source", data, size=len(data), mtime_ns=123)
"""


def test_concurrent_puts_of_the_same_content(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "cache"), "30"]) for _ in range(3)]
    cache = PrefetchCache(tmp_path / "cache")
    data = bytes(range(256)) * 4096
    seen = 0
    while any(p.poll() is None for p in procs):
        got = cache.get("shared-source", len(data), 123)
        assert got is None or got == data                 # never a partial blob
        seen += got is not None
    assert all(p.returncode == 0 for p in procs)
    assert cache.get("shared-source", len(data), 123) == data
    assert cache.total_bytes() == len(data)
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".shadow-tmp-")]
    assert leftovers == []
