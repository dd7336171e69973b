"""The settle rule: when a live instance can no longer take predicted work (pure).

Rollback settles shadow runs with it and pre-fetch / pre-allocation settles its preparations with
it, so both give up on a prediction for the same reasons, worded the same way.
"""

from __future__ import annotations

from collections.abc import Sequence


def abandoned(prefix: Sequence[str], *, start: int, position: int, activity: str | None, failed: str | None,
              ended_at: float | None, now: float, chain_gap_s: float, divergence_slack: int) -> str | None:
    """Why the live instance (`prefix`: its executed steps in start order) will not reach `activity`
    (expected at index `position`, predicted when `start` steps had started), or None while it may:
    a run of it failed or was cancelled (`failed`), it started `divergence_slack` more steps than
    the position without it (another branch; slack tolerates parallel steps finishing out of
    order), or it ended (`ended_at`) more than `chain_gap_s` ago."""
    if failed:
        return failed
    if len(prefix) > position + divergence_slack:
        return f"live instance took another branch ({', '.join(list(prefix[start:])[:4])})"
    if ended_at is not None and now - ended_at > chain_gap_s:
        return f"live instance ended without {activity}"
    return None


def expired(predicted_at: float, now: float, ttl_s: float) -> str | None:
    """Why a prediction made at `predicted_at` (epoch s) is over by its TTL, or None."""
    return f"prediction expired after {ttl_s:.0f}s" if now - predicted_at > ttl_s else None


__all__ = ["abandoned", "expired"]
