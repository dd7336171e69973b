"""A content-addressed local cache of input files, filled ahead of the live step that reads them (pure).

Blobs are stored by the sha256 of their bytes (`blobs/<d[:2]>/<digest>`, written atomically), and
one index entry per source (`index/<h[:2]>/<sha256(source)>.json`: source, size, mtime_ns, digest,
fetched_at). `get(source, size, mtime_ns)` returns bytes only when the entry describes the source's
current identity and the blob still hashes to the digest; anything else drops the entry and returns
None, so a reader falls back to the source and is never served stale or damaged bytes.

Several processes may share a cache (the sensor fills it, run workers read it): every file is
replaced atomically, a lost race only costs a miss. The entry file's mtime is its last use (LRU).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from shadow_dagster.speculation.atomic import TEMP_PREFIX, atomic_write

DEFAULT_MAX_BYTES = 2 << 30        # 2 GiB
DEFAULT_MIN_AGE_S = 0.1            # a file younger than this may be rewritten within one mtime tick


@dataclass(frozen=True)
class CacheEntry:
    """What the cache holds for one source: its identity when fetched and the digest of its bytes."""

    source: str
    size: int
    mtime_ns: int
    digest: str
    fetched_at: float


def _check_int(name: str, value, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_source(source) -> str:
    if not isinstance(source, str) or not source:
        raise ValueError(f"source must be a non-empty string (a path or URI), got {source!r}")
    return source


class PrefetchCache:
    """Content-addressed cache under `root`, capped at `max_bytes` of blobs (least recently used out)."""

    def __init__(self, root: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES,
                 min_age_s: float = DEFAULT_MIN_AGE_S):
        if root is None or not os.fspath(root):
            raise ValueError("the prefetch cache needs a root directory")
        self.max_bytes = _check_int("prefetch cache max_bytes", max_bytes)
        if isinstance(min_age_s, bool) or not isinstance(min_age_s, (int, float)) or not 0 <= min_age_s < 3600:
            raise ValueError(f"min_age_s must be a number of seconds in [0, 3600), got {min_age_s!r}")
        self.min_age_s = float(min_age_s)
        self.root = Path(os.path.abspath(os.fspath(root)))

    # ---------------------------------------------------------------- layout
    def _entry_path(self, source: str) -> Path:
        h = hashlib.sha256(source.encode()).hexdigest()
        return self.root / "index" / h[:2] / f"{h}.json"

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / digest[:2] / digest

    # ---------------------------------------------------------------- write
    def put(self, source: str, data: bytes, *, size: int, mtime_ns: int) -> CacheEntry | None:
        """Store `data` as the content of `source` at identity (size, mtime_ns); None if over the cap."""
        _check_source(source)
        _check_int("size", size)
        _check_int("mtime_ns", mtime_ns)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        if len(data) != size:
            raise ValueError(f"size {size} does not describe the {len(data)} bytes given for {source}")
        if size > self.max_bytes:
            return None
        digest = hashlib.sha256(data).hexdigest()
        blob = self.blob_path(digest)
        try:
            present = blob.stat().st_size == size
        except FileNotFoundError:
            present = False
        if not present:
            atomic_write(blob, bytes(data))
        entry = CacheEntry(source, size, mtime_ns, digest, time.time())
        atomic_write(self._entry_path(source), json.dumps(asdict(entry), sort_keys=True).encode())
        self._evict(keep=source)
        return entry

    def put_file(self, path: str | os.PathLike) -> CacheEntry | None:
        """Copy a local file in, keyed by its absolute path. None when it changed while being read,
        is younger than `min_age_s` (it may still be rewritten within one mtime tick) or is over the cap."""
        source = os.path.abspath(os.fspath(path))
        before = os.stat(source)
        if before.st_size > self.max_bytes or time.time_ns() - before.st_mtime_ns < self.min_age_s * 1e9:
            return None
        with open(source, "rb") as fh:
            data = fh.read()
        after = os.stat(source)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(data) != after.st_size:
            return None
        return self.put(source, data, size=after.st_size, mtime_ns=after.st_mtime_ns)

    # ---------------------------------------------------------------- read
    def lookup(self, source: str) -> CacheEntry | None:
        """The index entry of `source` (identity not checked), or None."""
        try:
            doc = json.loads(self._entry_path(_check_source(source)).read_bytes())
            return CacheEntry(**{k: doc[k] for k in CacheEntry.__dataclass_fields__})
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def get(self, source: str, size: int, mtime_ns: int) -> bytes | None:
        """The cached bytes of `source` if its identity is still (size, mtime_ns) and the blob verifies."""
        _check_int("size", size)
        _check_int("mtime_ns", mtime_ns)
        entry = self.lookup(source)
        if entry is None:
            return None
        if (entry.size, entry.mtime_ns) != (size, mtime_ns):
            self.discard(source)                  # the source was rewritten: this entry is stale
            return None
        try:
            data = self.blob_path(entry.digest).read_bytes()
        except FileNotFoundError:
            self.discard(source)
            return None
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.digest:
            self._unlink(self.blob_path(entry.digest))   # tampered or truncated: never served
            self.discard(source)
            return None
        try:
            os.utime(self._entry_path(source))    # last use, for LRU eviction
        except FileNotFoundError:
            pass
        return data

    def get_file(self, path: str | os.PathLike) -> bytes | None:
        """`get` for a local file at its current identity; raises FileNotFoundError if it is gone."""
        source = os.path.abspath(os.fspath(path))
        st = os.stat(source)
        return self.get(source, st.st_size, st.st_mtime_ns)

    # ---------------------------------------------------------------- release
    def discard(self, source: str) -> bool:
        """Drop the entry of `source` (and its blob when no other entry uses it); True if there was one."""
        entry = self.lookup(source)
        removed = self._unlink(self._entry_path(source))
        if entry is not None and not any(e.digest == entry.digest for e in self.entries()):
            self._unlink(self.blob_path(entry.digest))
        return removed

    def entries(self) -> list[CacheEntry]:
        """Every index entry, least recently used first."""
        found = []
        for path in (self.root / "index").glob("*/*.json"):
            try:
                used = path.stat().st_mtime_ns
                doc = json.loads(path.read_bytes())
                found.append((used, CacheEntry(**{k: doc[k] for k in CacheEntry.__dataclass_fields__})))
            except (FileNotFoundError, ValueError, KeyError, TypeError):
                continue
        return [e for _, e in sorted(found, key=lambda t: (t[0], t[1].source))]

    def total_bytes(self) -> int:
        """Bytes of blob files on disk."""
        return sum(p.stat().st_size for p in (self.root / "blobs").glob("*/*")
                   if p.is_file() and not p.name.startswith(TEMP_PREFIX))

    def _evict(self, keep: str) -> None:
        entries = self.entries()
        sizes = {e.digest: e.size for e in entries}
        total = sum(sizes.values())
        for entry in entries:
            if total <= self.max_bytes:
                break
            if entry.source == keep:
                continue
            self._unlink(self._entry_path(entry.source))
            entries = [e for e in entries if e.source != entry.source]
            if not any(e.digest == entry.digest for e in entries):
                self._unlink(self.blob_path(entry.digest))
                total -= sizes.pop(entry.digest, 0)

    @staticmethod
    def _unlink(path: Path) -> bool:
        try:
            path.unlink()
            return True
        except FileNotFoundError:
            return False


__all__ = ["CacheEntry", "DEFAULT_MAX_BYTES", "PrefetchCache"]
