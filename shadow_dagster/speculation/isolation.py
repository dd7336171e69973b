"""Isolation of shadow writes from live storage, checked on resolved real paths (no Dagster import)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from shadow_dagster.errors import ShadowDagsterError


class ShadowIsolationError(ShadowDagsterError, PermissionError):
    """A shadow write would reach live storage (directly, through `..`, or through a symlink)."""


def real_path(path: str | os.PathLike) -> Path:
    """The absolute path with every symlink of its existing prefix resolved."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when the real path of `path` is `root` or lies under the real path of `root`."""
    p, r = real_path(path), real_path(root)
    return p == r or r in p.parents


def check_outside(path: str | os.PathLike, forbidden_roots: Iterable[str | os.PathLike]) -> Path:
    """Return the real path of `path`, or raise ShadowIsolationError if it lies under a forbidden root."""
    resolved = real_path(path)
    for root in forbidden_roots:
        if is_within(resolved, root):
            raise ShadowIsolationError(
                f"shadow write refused: {os.fspath(path)!s} resolves to {resolved}, which is inside "
                f"live storage {real_path(root)}"
            )
    return resolved


def check_disjoint(shadow_root: str | os.PathLike, live_root: str | os.PathLike) -> None:
    """Refuse a shadow root inside live storage, or live storage inside the shadow root."""
    if is_within(shadow_root, live_root) or is_within(live_root, shadow_root):
        raise ShadowIsolationError(
            f"shadow root {real_path(shadow_root)} and live root {real_path(live_root)} overlap; "
            "give them disjoint directories"
        )
