"""Where fitted fingerprints live on disk, shared by the assets, the sensor and the CLI."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from shadow_dagster.store.engine import StoreConfigError
from shadow_dagster.store.layout import FINGERPRINT_DIR_ENV, ShadowStorage

if TYPE_CHECKING:  # loaded by the functions that read a file, not by the code location
    from shadow_dagster.fingerprint import Fingerprint

ENV_DIR = FINGERPRINT_DIR_ENV
SUFFIX = ".fingerprint"


def fingerprint_dir(root: str | os.PathLike | None = None) -> Path:
    """`root`, else $SHADOW_DAGSTER_FINGERPRINT_DIR, else $DAGSTER_HOME/shadow_dagster/fingerprints."""
    try:
        return Path(ShadowStorage(fingerprint_dir=root).location("fingerprint_dir"))
    except StoreConfigError:
        raise RuntimeError(f"set DAGSTER_HOME or {ENV_DIR} to say where fingerprints are stored") from None


def fingerprint_path(workflow: str, root: str | os.PathLike | None = None) -> Path:
    """The file of `workflow`'s fingerprint (the name is made filesystem-safe)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", workflow)[:200] or "_"
    return fingerprint_dir(root) / f"{safe}{SUFFIX}"


def load_fingerprint(workflow: str, root: str | os.PathLike | None = None) -> Fingerprint | None:
    """The stored fingerprint of `workflow`, or None when none was fitted yet."""
    from shadow_dagster.fingerprint import Fingerprint

    path = fingerprint_path(workflow, root)
    return Fingerprint.load(path) if path.exists() else None


def load_fingerprints(root: str | os.PathLike | None = None) -> dict[str, Fingerprint]:
    """Every readable stored fingerprint by workflow; unreadable files raise FingerprintFormatError."""
    from shadow_dagster.fingerprint import Fingerprint

    directory = fingerprint_dir(root)
    found: dict[str, Fingerprint] = {}
    if not directory.exists():
        return found
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        fp = Fingerprint.load(path)
        found[fp.workflow] = fp
    return found


__all__ = ["fingerprint_dir", "fingerprint_path", "load_fingerprint", "load_fingerprints"]
