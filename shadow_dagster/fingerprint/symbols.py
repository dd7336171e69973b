"""Activity vocabulary: maps step names to integer symbols, with END and UNKNOWN symbols.

Symbols 0..V-1 are the known activities (most frequent first, ties by name), V is END (end of the
workflow instance) and V+1 is UNKNOWN (any activity not seen when the vocabulary was built).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

END = "<end>"
UNKNOWN = "<unknown>"


class Vocabulary:
    """An ordered set of activity names plus the END and UNKNOWN symbols."""

    def __init__(self, activities: Sequence[str]):
        names = list(activities)
        if len(set(names)) != len(names):
            raise ValueError("vocabulary has duplicate activity names")
        for reserved in (END, UNKNOWN):
            if reserved in names:
                raise ValueError(f"activity name {reserved!r} is reserved")
        self.activities: list[str] = names
        self._index = {a: i for i, a in enumerate(names)}

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[str]]) -> Vocabulary:
        counts = Counter(a for seq in sequences for a in seq)
        return cls(sorted(counts, key=lambda a: (-counts[a], a)))

    @property
    def n_activities(self) -> int:
        return len(self.activities)

    @property
    def end(self) -> int:
        return len(self.activities)

    @property
    def unknown(self) -> int:
        return len(self.activities) + 1

    @property
    def n_symbols(self) -> int:
        """Activities + END + UNKNOWN."""
        return len(self.activities) + 2

    def __contains__(self, activity: str) -> bool:
        return activity in self._index

    def code(self, activity: str) -> int:
        return self._index.get(activity, self.unknown)

    def encode(self, activities: Sequence[str]) -> np.ndarray:
        unk = self.unknown
        return np.fromiter((self._index.get(a, unk) for a in activities), dtype=np.int64,
                           count=len(activities))

    def name(self, symbol: int) -> str:
        if symbol == self.end:
            return END
        if symbol == self.unknown:
            return UNKNOWN
        return self.activities[symbol]
