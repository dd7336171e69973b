"""Next-step accuracy over every non-empty prefix of every case (end of case included)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .symbols import Vocabulary


def next_targets(seqs: Sequence[np.ndarray], vocab: Vocabulary) -> np.ndarray:
    """The symbol after each prefix of length 1..L: s[1], ..., s[L-1], END."""
    if not seqs:
        return np.empty(0, dtype=np.int64)
    return np.concatenate([np.append(np.asarray(s[1:], dtype=np.int64), vocab.end)
                           for s in seqs if len(s)])


def ranked(proba: np.ndarray, vocab: Vocabulary, top: int = 3) -> np.ndarray:
    """Indices of the `top` most likely symbols per row; UNKNOWN is never predicted and ties go
    to the lower symbol (the more frequent activity)."""
    p = np.array(proba, dtype=np.float64, copy=True)
    p[:, vocab.unknown] = -1.0
    return np.argsort(-p, axis=1, kind="stable")[:, :top]


def topk_accuracy(proba: np.ndarray, targets: np.ndarray, vocab: Vocabulary) -> dict:
    """{"top1", "top3", "prefixes"}; a target that is UNKNOWN always counts as a miss."""
    if len(targets) != len(proba):
        raise ValueError(f"{len(proba)} predictions for {len(targets)} targets")
    if len(targets) == 0:
        return {"top1": None, "top3": None, "prefixes": 0}
    top = ranked(proba, vocab, 3)
    hit = top == targets[:, None]
    return {"top1": round(float(hit[:, 0].mean()), 4), "top3": round(float(hit.any(1).mean()), 4),
            "prefixes": int(len(targets))}
