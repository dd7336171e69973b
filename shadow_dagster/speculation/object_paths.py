"""Where the shadow output store keeps payloads: content-addressed files under its root, so whether
a provenance key may have an output is one directory listing, with no database opened."""

from __future__ import annotations

import os
from pathlib import Path


def object_path(root: Path, provenance_key: str, digest: str) -> Path:
    """The payload file of `provenance_key` with content `digest` (rows and files agree on it)."""
    return root / "objects" / provenance_key[:2] / f"{provenance_key}.{digest[:16]}"


def may_hold(root: str | os.PathLike, provenance_key: str) -> bool:
    """False when no payload of `provenance_key` exists under `root` (then no reusable output does:
    a payload is written before its row is marked complete)."""
    folder = Path(root) / "objects" / provenance_key[:2]
    try:
        return any(name.startswith(provenance_key + ".") for name in os.listdir(folder))
    except FileNotFoundError:
        return False
