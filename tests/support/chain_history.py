"""Seeding shared by the sensor tests: real past instances of the ingest -> left|right chain."""

from __future__ import annotations

from shadow_dagster.dagster.fingerprints import fingerprint_path
from shadow_dagster.dagster.ingest import ingest
from shadow_dagster.fingerprint import Fingerprint
from shadow_dagster.signals.cases import cases_from_signals
from shadow_dagster.store.signal_store import SignalStore

HISTORY = "LLRLLLRLLLLR"      # the branch each past instance took: left 75%


def seed_chain_history(run, instance, url: str, history: str = HISTORY) -> tuple[SignalStore, Fingerprint]:
    """Run each past instance (`run(instance, job, workflow_key)`: ingest, then its branch job),
    ingest the signals into the store at `url`, fit and save the `ingest` fingerprint."""
    for i, branch in enumerate(history):
        run(instance, "ingest", f"hist-{i}")
        run(instance, "left" if branch == "L" else "right", f"hist-{i}")
    store = SignalStore(url)
    ingest(instance, store, resolution_ms=1)
    cases = [c for c in cases_from_signals(store.signals()) if c.workflow == "ingest"]
    assert len(cases) == len(history)
    fp = Fingerprint.fit(cases, window_days=None)
    fingerprint_path("ingest").parent.mkdir(parents=True, exist_ok=True)
    fp.save(fingerprint_path("ingest"))
    return store, fp
