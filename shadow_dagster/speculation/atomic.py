"""Crash-safe file writes: temp file in the target directory, fsync, os.replace, fsync of the directory."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from shadow_dagster.errors import ShadowDagsterError

TEMP_PREFIX = ".shadow-tmp-"
_CHUNK = 1 << 20


class ContentMismatch(ShadowDagsterError, ValueError):
    """Bytes read back do not have the expected content hash: the file was changed or corrupted."""


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside `path` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_in(directory: Path) -> tuple[int, str]:
    directory.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, never part."""
    target = Path(path)
    fd, tmp = _temp_in(target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(target.parent)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike, expected_hash: str) -> int:
    """Copy src to dst atomically, verifying the sha256 of the bytes copied before they become visible.

    Returns the number of bytes copied; raises ContentMismatch (and leaves dst untouched) when the
    source does not hash to `expected_hash`.
    """
    target = Path(dst)
    fd, tmp = _temp_in(target.parent)
    digest, size = hashlib.sha256(), 0
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            while chunk := fin.read(_CHUNK):
                digest.update(chunk)
                fout.write(chunk)
                size += len(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        if digest.hexdigest() != expected_hash:
            raise ContentMismatch(f"{src} hashes to {digest.hexdigest()}, expected {expected_hash}")
        os.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(target.parent)
    return size


def read_verified(path: str | os.PathLike, expected_hash: str, expected_size: int | None = None) -> bytes:
    """Read a file and check its sha256 (and size); raises ContentMismatch or FileNotFoundError."""
    data = Path(path).read_bytes()
    if expected_size is not None and len(data) != expected_size:
        raise ContentMismatch(f"{path} has {len(data)} bytes, expected {expected_size}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_hash:
        raise ContentMismatch(f"{path} hashes to {actual}, expected {expected_hash}")
    return data


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
