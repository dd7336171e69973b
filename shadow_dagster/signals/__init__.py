"""Temporal binary signals (pure Python): transitions, timestamp arrays, intensity."""

from shadow_dagster.signals.model import (
    MAX_RESOLUTION_MS,
    MIN_RESOLUTION_MS,
    Signal,
    SignalRow,
    Transition,
    quantise_ms,
    validate_intensity,
    validate_resolution_ms,
)

__all__ = [
    "MAX_RESOLUTION_MS",
    "MIN_RESOLUTION_MS",
    "Signal",
    "SignalRow",
    "Transition",
    "quantise_ms",
    "validate_intensity",
    "validate_resolution_ms",
]
