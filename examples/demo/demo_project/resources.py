"""Resources of the example: compute scale and a local folder standing in for external systems."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pandas as pd
from dagster import ConfigurableResource

from shadow_dagster.dagster.shadow_env import ShadowSafe

SCALE_ENV = "SHADOW_DAGSTER_EXAMPLE_SCALE"
EXTERNAL_ENV = "SHADOW_DAGSTER_EXAMPLE_EXTERNAL_DIR"
LOAD_ENV = "SHADOW_DAGSTER_EXAMPLE_LOAD_S"
GATE_ENV = "SHADOW_DAGSTER_EXAMPLE_LOAD_GATE"
MAX_LOAD_S = 600.0
FAST_SCALE = 0.02            # what `simulate(fast=True)` and the tests use


def _float_env(name: str, default: float, ok, bounds: str, example: str) -> float:
    """$name as a float (`default` when unset); ValueError naming the variable when not `ok(value)`."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; use e.g. {example}") from None
    if not ok(value):
        raise ValueError(f"{name}={raw!r} must be {bounds}; use e.g. {example}")
    return value


def scale_from_env() -> float:
    """$SHADOW_DAGSTER_EXAMPLE_SCALE as a positive float (1.0 when unset)."""
    return _float_env(SCALE_ENV, 1.0, lambda v: 0 < v <= 100, "in (0, 100]", "1.0 (full) or 0.02 (fast)")


def load_seconds_from_env() -> float:
    """$SHADOW_DAGSTER_EXAMPLE_LOAD_S: seconds a warehouse load takes, 0 when unset."""
    return _float_env(LOAD_ENV, 0.0, lambda v: 0 <= v <= MAX_LOAD_S,
                      f"between 0 and {MAX_LOAD_S:.0f} seconds", "30")


class ExampleSettings(ConfigurableResource, ShadowSafe):
    """Compute scale of the example pipeline: 1.0 is full size, small values make runs fast (read-only,
    hence shadow-safe)."""

    scale: float = 1.0


class ExternalSystem(ConfigurableResource):
    """A folder standing in for systems outside the asset store (warehouse, website, outbox).

    Writes here are side effects: the steps doing them are critical and never pre-executed.
    `root` empty means $SHADOW_DAGSTER_EXAMPLE_EXTERNAL_DIR, else <DAGSTER_HOME>/external.
    `load_s` is how long a warehouse load takes (a real warehouse's load and commit take seconds to
    minutes): the live run waits that long at its critical load step, as real pipelines do.
    `load_gate`, a file path, makes a load also wait until that file exists (at most 600 s): a
    test holds the live run at its load with it, so no wall-clock race decides what it checks.
    """

    root: str = ""
    load_s: float = 0.0
    load_gate: str = ""

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

    def load_table(self, instance, relative: str, frame: pd.DataFrame) -> Path:
        """A warehouse load: takes `load_s` seconds, then the table appears at once (atomic)."""
        if not 0 <= self.load_s <= MAX_LOAD_S:
            raise ValueError(f"ExternalSystem.load_s must be between 0 and {MAX_LOAD_S:.0f} seconds, "
                             f"got {self.load_s!r}")
        time.sleep(self.load_s)
        deadline = time.monotonic() + MAX_LOAD_S
        while self.load_gate and not Path(self.load_gate).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the warehouse load gate {self.load_gate} did not open in {MAX_LOAD_S:.0f} s")
            time.sleep(0.2)
        return self.write_csv(instance, relative, frame)
