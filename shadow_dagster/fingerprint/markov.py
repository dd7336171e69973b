"""k-order Markov next-step model with interpolated backoff, optionally conditioned on run metadata.

Counts are kept for every context length 0..k (a context is the last j symbols of the prefix,
left-padded with a START symbol, so the first steps of an instance have their own contexts).
A prediction interpolates from the shortest to the longest seen context with Witten-Bell weights
(a context seen n times with T distinct successors keeps T/(n+T) of its mass for the shorter
context), so unseen long contexts back off to shorter ones. When conditioned on case attributes
(e.g. backfill, schedule, weekday), one more level on top uses the order-k context *and* the
attribute values; an unseen combination backs off to the unconditioned model.

Counting and prediction are vectorised: contexts are encoded as int64 codes, counted with
`np.unique`/`np.bincount` and looked up with `np.searchsorted`. Memory is O(contexts x symbols).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .symbols import Vocabulary

_CHUNK = 65536


def _layout(seqs: Sequence[np.ndarray], order: int, start: int, end: int | None,
            first_prefix: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate START-padded sequences; return (array, prefix-end positions, case index).

    Prefix-end positions cover prefixes of length first_prefix..L of every sequence.
    """
    pad = max(order, 1)
    blocks, lengths = [], np.empty(len(seqs), dtype=np.int64)
    head = np.full(pad, start, dtype=np.int64)
    tail = np.array([end], dtype=np.int64) if end is not None else np.empty(0, dtype=np.int64)
    for i, s in enumerate(seqs):
        blocks.extend((head, np.asarray(s, dtype=np.int64), tail))
        lengths[i] = len(s)
    arr = np.concatenate(blocks) if blocks else np.empty(0, dtype=np.int64)
    sizes = lengths + pad + len(tail)
    block_start = np.concatenate(([0], np.cumsum(sizes)[:-1])) if len(seqs) else sizes
    n_prefixes = np.maximum(lengths - first_prefix + 1, 0)
    case = np.repeat(np.arange(len(seqs)), n_prefixes)
    group_start = np.concatenate(([0], np.cumsum(n_prefixes)[:-1])) if len(seqs) else n_prefixes
    within = np.arange(int(n_prefixes.sum())) - np.repeat(group_start, n_prefixes)
    pos = np.repeat(block_start + pad - 1 + first_prefix, n_prefixes) + within
    return arr, pos, case


class MarkovModel:
    """Order-k Markov chain with Witten-Bell backoff; `order=1` is the first-order baseline."""

    def __init__(self, vocab: Vocabulary, order: int = 1, condition_on: Sequence[str] = ()):
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"Markov order must be an integer >= 1, got {order!r}")
        self.vocab = vocab
        self.order = order
        self.condition_on = tuple(condition_on)
        self.start = vocab.n_symbols          # padding symbol, only ever in contexts
        self.base = vocab.n_symbols + 1
        self.signatures: dict[tuple[str, ...], int] = {}
        # per level j (0..order): sorted context codes, counts [n_ctx, S], row totals, distinct
        self.levels: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.cond_levels: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.n_cases = 0

    # ---------------------------------------------------------------- fitting
    def signature(self, attrs: Mapping[str, str] | None) -> tuple[str, ...]:
        attrs = attrs or {}
        return tuple(str(attrs.get(key, "")) for key in self.condition_on)

    def _check_size(self, n_sigs: int) -> None:
        if self.base ** self.order * max(n_sigs, 1) >= 2 ** 62:
            raise ValueError(f"Markov order {self.order} is too high for {self.vocab.n_symbols} "
                             "symbols: context codes would overflow int64; lower the order")

    def _codes(self, arr: np.ndarray, pos: np.ndarray) -> list[np.ndarray]:
        codes = [np.zeros(len(pos), dtype=np.int64)]
        for j in range(1, self.order + 1):
            codes.append(codes[-1] + arr[pos - (j - 1)] * self.base ** (j - 1))
        return codes

    @staticmethod
    def _table(codes: np.ndarray, targets: np.ndarray, n_symbols: int):
        ctx, inv = np.unique(codes, return_inverse=True)
        counts = np.bincount(inv * n_symbols + targets, minlength=len(ctx) * n_symbols)
        counts = counts.reshape(len(ctx), n_symbols).astype(np.float64)
        return ctx, counts, counts.sum(axis=1), (counts > 0).sum(axis=1).astype(np.float64)

    def fit(self, seqs: Sequence[np.ndarray], attrs: Sequence[Mapping[str, str]] | None = None
            ) -> MarkovModel:
        """Count every prefix -> next symbol (first step and END included) of the sequences."""
        if attrs is not None and len(attrs) != len(seqs):
            raise ValueError(f"{len(seqs)} sequences but {len(attrs)} attribute dicts")
        sigs = [self.signature(a) for a in (attrs or [{}] * len(seqs))]
        if self.condition_on:
            self.signatures = {s: i for i, s in enumerate(sorted(set(sigs)))}
        self._check_size(len(self.signatures))
        arr, pos, case = _layout(seqs, self.order, self.start, self.vocab.end, 0)
        targets = arr[pos + 1]
        codes = self._codes(arr, pos)
        S = self.vocab.n_symbols
        self.levels = [self._table(c, targets, S) for c in codes]
        self.cond_levels = []
        if self.condition_on:
            sig_ids = np.array([self.signatures[s] for s in sigs], dtype=np.int64)[case]
            for j in range(1, self.order + 1):
                ccodes = sig_ids * self.base ** j + codes[j]
                self.cond_levels.append(self._table(ccodes, targets, S))
        self.n_cases = len(seqs)
        return self

    # ------------------------------------------------------------- prediction
    @staticmethod
    def _lookup(level, codes: np.ndarray):
        ctx = level[0]
        if len(ctx) == 0:
            return np.zeros(len(codes), dtype=np.int64), np.zeros(len(codes), dtype=bool)
        idx = np.minimum(np.searchsorted(ctx, codes), len(ctx) - 1)
        return idx, ctx[idx] == codes

    @staticmethod
    def _blend(p: np.ndarray, level, idx: np.ndarray, found: np.ndarray) -> None:
        if not found.any():
            return
        rows = idx[found]
        n, t = level[2][rows, None], level[3][rows, None]
        p[found] = (level[1][rows] + t * p[found]) / (n + t)

    def _proba_codes(self, codes: list[np.ndarray], sig_ids: np.ndarray | None, order: int
                     ) -> np.ndarray:
        S = self.vocab.n_symbols
        p = np.zeros((len(codes[0]), S))
        p[:, : self.vocab.end + 1] = 1.0 / (self.vocab.end + 1)   # uniform over activities + END
        for j in range(order + 1):
            idx, found = self._lookup(self.levels[j], codes[j])
            self._blend(p, self.levels[j], idx, found)
        if sig_ids is not None and self.cond_levels:
            known = sig_ids >= 0
            ccodes = np.where(known, sig_ids, 0) * self.base ** order + codes[order]
            idx, found = self._lookup(self.cond_levels[order - 1], ccodes)
            self._blend(p, self.cond_levels[order - 1], idx, found & known)
        return p

    def _check_order(self, order: int | None) -> int:
        order = self.order if order is None else order
        if not 1 <= order <= self.order:
            raise ValueError(f"order must be in 1..{self.order}, got {order}")
        if not self.levels:
            raise ValueError("Markov model is not fitted")
        return order

    def proba_prefixes(self, seqs: Sequence[np.ndarray],
                       attrs: Sequence[Mapping[str, str]] | None = None, *,
                       order: int | None = None, conditioned: bool = True,
                       include_empty: bool = False) -> np.ndarray:
        """Next-symbol distributions after every prefix (length 1..L, or 0..L) of every sequence,
        stacked case by case: shape [n_prefixes, n_symbols]."""
        order = self._check_order(order)
        arr, pos, case = _layout(seqs, self.order, self.start, None, 0 if include_empty else 1)
        use_cond = conditioned and bool(self.condition_on)
        if use_cond:
            sigs = [self.signature(a) for a in (attrs or [{}] * len(seqs))]
            sig_of_case = np.array([self.signatures.get(s, -1) for s in sigs], dtype=np.int64)
        out = np.empty((len(pos), self.vocab.n_symbols))
        for lo in range(0, len(pos), _CHUNK):
            sl = slice(lo, lo + _CHUNK)
            codes = self._codes(arr, pos[sl])
            sig_ids = sig_of_case[case[sl]] if use_cond else None
            out[sl] = self._proba_codes(codes, sig_ids, order)
        return out

    def proba(self, prefix: np.ndarray, attrs: Mapping[str, str] | None = None, *,
              order: int | None = None, conditioned: bool = True) -> np.ndarray:
        """Next-symbol distribution after one encoded prefix (may be empty)."""
        order = self._check_order(order)
        pad = max(self.order, 1)
        ctx = np.concatenate((np.full(pad, self.start, dtype=np.int64),
                              np.asarray(prefix, dtype=np.int64)[-pad:]))
        codes = self._codes(ctx, np.array([len(ctx) - 1]))
        sig_ids = None
        if conditioned and self.condition_on:
            sig_ids = np.array([self.signatures.get(self.signature(attrs), -1)])
        return self._proba_codes(codes, sig_ids, order)[0]

    def predict(self, prefix: Sequence[str], attrs: Mapping[str, str] | None = None, *,
                order: int | None = None, conditioned: bool = True) -> list[tuple[str, float]]:
        """(activity or END, probability) pairs, most likely first; unseen steps count as UNKNOWN."""
        p = self.proba(self.vocab.encode(list(prefix)), attrs, order=order,
                       conditioned=conditioned)
        order_ = np.argsort(-p[: self.vocab.end + 1], kind="stable")
        return [(self.vocab.name(int(i)), float(p[i])) for i in order_ if p[i] > 0]

    # ---------------------------------------------------------- serialisation
    def state(self, prefix: str) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {"order": self.order, "condition_on": list(self.condition_on),
                "signatures": [list(s) for s in sorted(self.signatures, key=self.signatures.get)],
                "n_cases": self.n_cases}
        arrays = {}
        for name, levels in (("u", self.levels), ("c", self.cond_levels)):
            for j, (ctx, counts, _, _) in enumerate(levels):
                arrays[f"{prefix}{name}{j}_ctx"] = ctx
                arrays[f"{prefix}{name}{j}_counts"] = counts
        return meta, arrays

    @classmethod
    def from_state(cls, vocab: Vocabulary, meta: dict, arrays: Mapping[str, np.ndarray],
                   prefix: str) -> MarkovModel:
        model = cls(vocab, int(meta["order"]), tuple(meta["condition_on"]))
        model.signatures = {tuple(s): i for i, s in enumerate(meta["signatures"])}
        model.n_cases = int(meta["n_cases"])
        S = vocab.n_symbols

        def level(name: str, j: int):
            ctx = np.asarray(arrays[f"{prefix}{name}{j}_ctx"], dtype=np.int64)
            counts = np.asarray(arrays[f"{prefix}{name}{j}_counts"], dtype=np.float64)
            if counts.ndim != 2 or counts.shape != (len(ctx), S):
                raise ValueError(f"array {prefix}{name}{j}_counts has shape {counts.shape}, "
                                 f"expected ({len(ctx)}, {S})")
            return ctx, counts, counts.sum(axis=1), (counts > 0).sum(axis=1).astype(np.float64)

        model.levels = [level("u", j) for j in range(model.order + 1)]
        if model.condition_on:
            model.cond_levels = [level("c", j) for j in range(model.order)]
        return model
