"""Resources of the example: compute scale and a local folder standing in for external systems."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
from dagster import ConfigurableResource

from shadow_dagster.dagster.shadow_env import ShadowSafe

SCALE_ENV = "SHADOW_DAGSTER_EXAMPLE_SCALE"
EXTERNAL_ENV = "SHADOW_DAGSTER_EXAMPLE_EXTERNAL_DIR"
FAST_SCALE = 0.02            # what `simulate(fast=True)` and the tests use


def scale_from_env() -> float:
    """$SHADOW_DAGSTER_EXAMPLE_SCALE as a positive float (1.0 when unset)."""
    raw = os.environ.get(SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{SCALE_ENV}={raw!r} is not a number; use e.g. 1.0 (full) or 0.02 (fast)") from None
    if not 0 < value <= 100:
        raise ValueError(f"{SCALE_ENV}={raw!r} must be in (0, 100]; use e.g. 1.0 (full) or 0.02 (fast)")
    return value


class ExampleSettings(ConfigurableResource, ShadowSafe):
    """Compute scale of the example pipeline: 1.0 is full size, small values make runs fast (read-only,
    hence shadow-safe)."""

    scale: float = 1.0


class ExternalSystem(ConfigurableResource):
    """A folder standing in for systems outside the asset store (warehouse, website, outbox).

    Writes here are side effects: the steps doing them are critical and never pre-executed.
    `root` empty means $SHADOW_DAGSTER_EXAMPLE_EXTERNAL_DIR, else <DAGSTER_HOME>/external.
    """

    root: str = ""

    def base(self, instance) -> Path:
        root = self.root or os.environ.get(EXTERNAL_ENV) or str(Path(instance.root_directory) / "external")
        return Path(root)

    def path(self, instance, relative: str) -> Path:
        return self.base(instance) / relative

    def write_text(self, instance, relative: str, text: str) -> Path:
        """Write atomically (temp file + rename) so readers never see a partial file."""
        target = self.path(instance, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
        return target

    def write_csv(self, instance, relative: str, frame: pd.DataFrame) -> Path:
        return self.write_text(instance, relative, frame.to_csv(index=False))
