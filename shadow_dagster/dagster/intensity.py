"""`report_intensity`: a step tells the signal sensor how far along it is."""

from __future__ import annotations

from shadow_dagster.signals.model import validate_intensity
from shadow_dagster.tags import INTENSITY_MARKER


def report_intensity(context, value: float) -> float:
    """Record `value` in [0, 1] as the current step's intensity (a log line the sensor parses).

    Raises ValueError at the call site for NaN, infinities and values outside [0, 1].
    """
    value = validate_intensity(value)
    log = getattr(context, "log", None)
    if log is None:
        raise TypeError(f"report_intensity needs a Dagster op/asset context, got {type(context).__name__}")
    log.info(f"{INTENSITY_MARKER}={value:.6f}")
    return value
