"""Where shadow-dagster keeps its state, derived in one place (no Dagster import).

`ShadowStorage` names the signal store (signals, outcomes, decisions), the shadow output index,
the shadow output files, the pre-fetch cache and the fitted fingerprints. Every field left empty
takes its default from the Dagster home (`resolved(home)`):

| location          | default                                                        |
|-------------------|----------------------------------------------------------------|
| signal_store_url  | $SHADOW_DAGSTER_STORE_URL, else sqlite:///HOME/shadow_dagster.db |
| output_store_url  | $SHADOW_DAGSTER_STORE_URL, else sqlite:///HOME/shadow_dagster.db (ShadowIOManager's) |
| shadow_dir        | HOME/shadow_dagster/outputs                                    |
| prefetch_dir      | prefetch/ next to shadow_dir                                   |
| fingerprint_dir   | $SHADOW_DAGSTER_FINGERPRINT_DIR, else HOME/shadow_dagster/fingerprints |

The stores it opens are shared per process (one per URL and settings), whoever asks: the IO
manager, the sensors, the report asset and the CLI.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from shadow_dagster.store.engine import StoreConfigError, default_url, normalise_url

if TYPE_CHECKING:   # SQLAlchemy loads when a store is opened, not with the code location
    from shadow_dagster.store.outputs import ShadowOutputStore
    from shadow_dagster.store.signal_store import SignalStore

FINGERPRINT_DIR_ENV = "SHADOW_DAGSTER_FINGERPRINT_DIR"
ROOT_NAME = "shadow_dagster"   # the folder in the Dagster home

_OPEN: dict[tuple, object] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ShadowStorage:
    """Every location of shadow-dagster's state; empty fields default from the Dagster home."""

    signal_store_url: str | None = None
    output_store_url: str | None = None
    shadow_dir: str | None = None
    prefetch_dir: str | None = None
    fingerprint_dir: str | None = None

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"ShadowStorage.{f.name} must be a string, got {value!r}")
            if value == "":
                object.__setattr__(self, f.name, None)
            elif isinstance(value, os.PathLike):
                object.__setattr__(self, f.name, os.fspath(value))
        for name in ("signal_store_url", "output_store_url"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, normalise_url(getattr(self, name)))

    def location(self, name: str, home: str | None = None) -> str:
        """One location (a field name), filled in and made absolute (`home`: the Dagster home,
        default $DAGSTER_HOME); StoreConfigError names what is missing when a default needs a home."""
        value = getattr(self, name)
        if name in ("signal_store_url", "output_store_url"):   # the index: ShadowIOManager's default,
            return value or default_url(_home(home))            # wherever the signals are
        if name == "shadow_dir":
            return os.path.abspath(value or os.path.join(_root(home, name), "outputs"))
        if name == "prefetch_dir":
            return os.path.abspath(value or os.path.join(os.path.dirname(self.location("shadow_dir", home)),
                                                         "prefetch"))
        if name == "fingerprint_dir":
            return os.path.abspath(value or os.environ.get(FINGERPRINT_DIR_ENV)
                                   or os.path.join(_root(home, name), "fingerprints"))
        raise AttributeError(f"ShadowStorage has no location {name!r}")

    def resolved(self, home: str | None = None) -> ShadowStorage:
        """This storage with every location filled in (see `location`)."""
        return ShadowStorage(**{f.name: self.location(f.name, home) for f in fields(self)})

    def merged(self, other: ShadowStorage, *, source: str) -> ShadowStorage:
        """This storage with `other`'s explicit fields added; a field both set differently raises
        ValueError naming `source`, since one location must be configured once."""
        out = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            same = (mine == theirs if f.name.endswith("_url") or mine is None or theirs is None
                    else os.path.abspath(mine) == os.path.abspath(theirs))
            if mine is not None and theirs is not None and not same:
                raise ValueError(f"{source} sets {f.name}={theirs!r} but the storage says {mine!r}: "
                                 "configure each location once")
            out[f.name] = mine if mine is not None else theirs
        return replace(self, **out)

    def signal_store(self, retention_days: float = 30.0) -> SignalStore:
        """The process-wide signal store at this storage's URL (engines are reused across ticks)."""
        from shadow_dagster.store.signal_store import SignalStore

        url = self.location("signal_store_url")
        return _shared(("signals", url, float(retention_days)), lambda: SignalStore(url, retention_days=retention_days))

    def output_store(self, live_root: str | None = None) -> ShadowOutputStore:
        """The process-wide shadow output store; `live_root` is a live storage root it must never overlap."""
        from shadow_dagster.store.outputs import ShadowOutputStore

        root, url = self.location("shadow_dir"), self.location("output_store_url")
        roots = [os.path.abspath(live_root)] if live_root else []
        return _shared(("outputs", root, url, tuple(roots)),
                       lambda: ShadowOutputStore(root, url, forbidden_roots=roots))


def _home(home: str | None) -> str | None:
    return home or os.environ.get("DAGSTER_HOME") or None


def _root(home: str | None, what: str) -> str:
    """HOME/shadow_dagster, the folder of every default location."""
    home = _home(home)
    if not home:
        raise StoreConfigError(f"{what} has no default without DAGSTER_HOME: set DAGSTER_HOME or give {what}")
    return os.path.join(os.path.abspath(home), ROOT_NAME)


def _shared(key: tuple, make):
    with _LOCK:
        found = _OPEN.get(key)
        if found is None:
            found = _OPEN[key] = make()
        return found


__all__ = ["FINGERPRINT_DIR_ENV", "ShadowStorage"]
