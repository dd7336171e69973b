"""A portable, pickle-free file format: one .npz holding a JSON document and numeric arrays.

Layout (np.savez, loaded with allow_pickle=False):
- `__meta__`: UTF-8 JSON as uint8; it holds `schema` (name), `version` and the model's fields.
- `__sha256__`: hex SHA-256 (as uint8) over the canonical JSON and every array's name, dtype,
  shape and bytes, in name order. Any change to the file's content fails this check.
- every other entry: a numeric array named by the model (no object arrays, so never pickle).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from shadow_dagster.errors import ShadowDagsterError

META, HASH = "__meta__", "__sha256__"


class FingerprintFormatError(ShadowDagsterError, ValueError):
    """A fingerprint file is missing, corrupt, truncated, tampered with or of another kind."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def _digest(meta_bytes: bytes, arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256(meta_bytes)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _canonical(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def write_bundle(path: str | os.PathLike, meta: dict, arrays: Mapping[str, np.ndarray]) -> str:
    """Write atomically to `path` (exact name, no suffix added); return the content hash."""
    for name, a in arrays.items():
        if name in (META, HASH) or np.asarray(a).dtype.kind not in "biuf":
            raise ValueError(f"array {name!r}: only numeric arrays can be stored")
    meta_bytes = _canonical(meta)
    digest = _digest(meta_bytes, arrays)
    payload = {META: np.frombuffer(meta_bytes, dtype=np.uint8),
               HASH: np.frombuffer(digest.encode(), dtype=np.uint8), **arrays}
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, allow_pickle=False, **payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def read_bundle(path: str | os.PathLike, schema: str, versions: set[int]
                ) -> tuple[dict, dict[str, np.ndarray], str]:
    """Read and verify a bundle; return (meta, arrays, content hash) or raise
    FingerprintFormatError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FingerprintFormatError(path, "no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, EOFError) as exc:
        raise FingerprintFormatError(path, f"not a fingerprint file or truncated ({exc})") from None
    except (ValueError, OSError, KeyError) as exc:
        raise FingerprintFormatError(path, f"corrupt or not a fingerprint file ({exc})") from None
    if not isinstance(arrays, dict) or META not in arrays or HASH not in arrays:
        raise FingerprintFormatError(path, f"not a fingerprint file (no {META}/{HASH} entries)")
    meta_bytes = arrays.pop(META).tobytes()
    stored = arrays.pop(HASH).tobytes().decode("ascii", "replace")
    try:
        meta = json.loads(meta_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FingerprintFormatError(path, f"metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("schema") != schema:
        found = meta.get("schema") if isinstance(meta, dict) else type(meta).__name__
        raise FingerprintFormatError(path, f"foreign file: schema {found!r}, expected {schema!r}")
    if meta.get("version") not in versions:
        raise FingerprintFormatError(path, f"unsupported schema version {meta.get('version')!r} "
                                           f"(this library reads {sorted(versions)})")
    actual = _digest(_canonical(meta), arrays)
    if actual != stored:
        raise FingerprintFormatError(path, "content hash mismatch: the file was altered or "
                                           "damaged after it was written")
    return meta, arrays, actual
