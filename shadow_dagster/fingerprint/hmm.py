"""Categorical HMM over step sequences (hmmlearn), with held-out selection of K and seed.

Each training sequence is the instance's steps followed by END. The model is hmmlearn's
CategoricalHMM with `implementation="scaling"`. Emissions are smoothed after fitting
(`(1 - eps) * B + eps / S`) so that the UNKNOWN symbol and steps never emitted by a state keep a
small probability: unseen steps map to UNKNOWN instead of making hmmlearn raise.

Next-step prediction is forward filtering over the prefix, then `alpha @ transmat @ emissionprob`
(vectorised over many cases at once for evaluation).

Bounded fit time (documented limits): each EM run uses at most `n_iter` iterations and only the
newest sequences whose total symbols x K^2 stays under `max_work` (at least `min_sequences`
sequences); a refit on more data warm-starts from the selected parameters for `refit_iter`
iterations instead of starting over.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .symbols import Vocabulary

EMISSION_EPS = 1e-3
N_ITER = 20
REFIT_ITER = 5
MAX_WORK = 2.5e7            # symbols x K^2 per EM iteration
MIN_SEQUENCES = 50

logging.getLogger("hmmlearn").setLevel(logging.ERROR)


def _newest(seqs: Sequence[np.ndarray], n_states: int, max_work: float, min_sequences: int
            ) -> list[np.ndarray]:
    budget = max_work / (n_states * n_states)
    chosen, total = [], 0
    for s in reversed(seqs):
        if len(chosen) >= min_sequences and total + len(s) + 1 > budget:
            break
        chosen.append(s)
        total += len(s) + 1
    return chosen[::-1]


def _with_end(seqs: Sequence[np.ndarray], end: int) -> tuple[np.ndarray, list[int]]:
    X = np.concatenate([np.append(np.asarray(s, dtype=np.int64), end) for s in seqs])
    return X.reshape(-1, 1), [len(s) + 1 for s in seqs]


@dataclass
class HMMModel:
    """Fitted HMM parameters plus the selection figures that produced them."""

    vocab: Vocabulary
    startprob: np.ndarray          # [K]
    transmat: np.ndarray           # [K, K]
    emissionprob: np.ndarray       # [K, S], smoothed
    seed: int = 0
    logloss: float | None = None   # held-out negative log-likelihood per symbol (nats)

    @property
    def n_states(self) -> int:
        return len(self.startprob)

    @classmethod
    def fit(cls, vocab: Vocabulary, seqs: Sequence[np.ndarray], *, n_states: int, seed: int = 0,
            n_iter: int = N_ITER, max_work: float = MAX_WORK,
            min_sequences: int = MIN_SEQUENCES, init: HMMModel | None = None) -> HMMModel:
        """EM fit on the newest sequences within the work budget (warm start from `init`)."""
        if n_states < 1:
            raise ValueError(f"n_states must be >= 1, got {n_states}")
        seqs = [s for s in seqs if len(s)]
        if not seqs:
            raise ValueError("HMM needs at least one non-empty sequence")
        used = _newest(seqs, n_states, max_work, min_sequences)
        X, lengths = _with_end(used, vocab.end)
        # imported here: hmmlearn pulls in scikit-learn and scipy (~1.5 s of CPU), and every run
        # process of a shadow-dagster code location imports this module without ever fitting
        from hmmlearn.hmm import CategoricalHMM

        hmm = CategoricalHMM(n_components=n_states, n_features=vocab.n_symbols, n_iter=n_iter,
                             tol=1e-2, random_state=seed, implementation="scaling",
                             init_params="" if init is not None else "ste")
        if init is not None:
            hmm.startprob_ = init.startprob.copy()
            hmm.transmat_ = init.transmat.copy()
            hmm.emissionprob_ = init.emissionprob.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            hmm.fit(X, lengths)
        return cls(vocab, *_clean(hmm.startprob_, hmm.transmat_, hmm.emissionprob_), seed=seed)

    # ---------------------------------------------------------------- inference
    def _forward(self, seqs: Sequence[np.ndarray], *, append_end: bool, collect: bool,
                 include_empty: bool) -> tuple[np.ndarray | None, float, int]:
        """Filter all sequences at once; return (stacked predictions, log-lik, n symbols)."""
        A, B, pi = self.transmat, self.emissionprob, self.startprob
        seqs = [np.append(np.asarray(s, dtype=np.int64), self.vocab.end) if append_end
                else np.asarray(s, dtype=np.int64) for s in seqs]
        n = len(seqs)
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        L = int(lengths.max()) if n else 0
        obs = np.full((n, L), 0, dtype=np.int64)
        for i, s in enumerate(seqs):
            obs[i, : len(s)] = s
        first = 0 if include_empty else 1
        per_case = np.maximum(lengths - first + 1, 0)
        offsets = np.concatenate(([0], np.cumsum(per_case)[:-1])) if n else per_case
        out = np.empty((int(per_case.sum()), B.shape[1])) if collect else None
        if collect and include_empty:
            out[offsets[per_case > 0]] = pi @ B
        alpha = np.tile(pi, (n, 1))
        loglik = 0.0
        for t in range(L):
            act = np.flatnonzero(lengths > t)
            prior = alpha[act] if t == 0 else alpha[act] @ A
            a = prior * B[:, obs[act, t]].T
            c = a.sum(axis=1)
            loglik += float(np.log(c).sum())
            alpha[act] = a / c[:, None]
            if collect:
                out[offsets[act] + (t + 1 - first)] = (alpha[act] @ A) @ B
        return out, loglik, int(lengths.sum())

    def proba_prefixes(self, seqs: Sequence[np.ndarray], *, include_empty: bool = False
                       ) -> np.ndarray:
        """Next-symbol distributions after every prefix, stacked case by case."""
        out, _, _ = self._forward(seqs, append_end=False, collect=True,
                                  include_empty=include_empty)
        return out

    def proba(self, prefix: np.ndarray) -> np.ndarray:
        prefix = np.asarray(prefix, dtype=np.int64)
        A, B = self.transmat, self.emissionprob
        alpha = self.startprob
        for t, o in enumerate(prefix):
            a = (alpha if t == 0 else alpha @ A) * B[:, o]
            alpha = a / a.sum()
        return self.startprob @ B if len(prefix) == 0 else (alpha @ A) @ B

    def score_logloss(self, seqs: Sequence[np.ndarray]) -> float:
        """Negative log-likelihood per symbol (END included) of the sequences."""
        _, loglik, n = self._forward(seqs, append_end=True, collect=False, include_empty=False)
        return -loglik / max(n, 1)

    # ------------------------------------------------------------ serialisation
    def state(self, prefix: str) -> tuple[dict, dict[str, np.ndarray]]:
        return ({"seed": self.seed, "logloss": self.logloss, "n_states": self.n_states},
                {f"{prefix}startprob": self.startprob, f"{prefix}transmat": self.transmat,
                 f"{prefix}emissionprob": self.emissionprob})

    @classmethod
    def from_state(cls, vocab: Vocabulary, meta: dict, arrays, prefix: str) -> HMMModel:
        pi = np.asarray(arrays[f"{prefix}startprob"], dtype=np.float64)
        A = np.asarray(arrays[f"{prefix}transmat"], dtype=np.float64)
        B = np.asarray(arrays[f"{prefix}emissionprob"], dtype=np.float64)
        K = len(pi)
        if A.shape != (K, K) or B.shape != (K, vocab.n_symbols):
            raise ValueError(f"HMM arrays have shapes {pi.shape}, {A.shape}, {B.shape}; "
                             f"expected ({K},), ({K}, {K}), ({K}, {vocab.n_symbols})")
        return cls(vocab, pi, A, B, seed=int(meta["seed"]), logloss=meta.get("logloss"))


def _clean(pi: np.ndarray, A: np.ndarray, B: np.ndarray):
    """Repair rows EM left empty or NaN, renormalise, and smooth emissions."""
    K, S = B.shape
    pi = np.nan_to_num(np.asarray(pi, dtype=np.float64))
    pi = pi / pi.sum() if pi.sum() > 0 else np.full(K, 1.0 / K)
    A = np.nan_to_num(np.asarray(A, dtype=np.float64))
    empty = A.sum(axis=1) <= 0
    A[empty] = 1.0 / K
    A = A / A.sum(axis=1, keepdims=True)
    B = np.nan_to_num(np.asarray(B, dtype=np.float64))
    B[B.sum(axis=1) <= 0] = 1.0 / S
    B = B / B.sum(axis=1, keepdims=True)
    B = (1.0 - EMISSION_EPS) * B + EMISSION_EPS / S
    return pi, A, B


def state_candidates(vocab: Vocabulary, factors: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
                     max_states: int = 128) -> list[int]:
    """K candidates around the vocabulary size V (activities + END): V/2, V, 1.5 V, 2 V."""
    V = vocab.n_activities + 1
    ks = {min(max_states, max(2, math.ceil(f * V))) for f in factors}
    return sorted(ks)


def select_hmm(vocab: Vocabulary, fit_seqs: Sequence[np.ndarray], val_seqs: Sequence[np.ndarray],
               *, candidates: Sequence[int] | None = None, seeds: Sequence[int] = (0, 1),
               n_iter: int = N_ITER, max_work: float = MAX_WORK) -> tuple[HMMModel, list[dict]]:
    """Fit every (K, seed) on `fit_seqs` and keep the lowest held-out log-loss on `val_seqs`."""
    if not val_seqs:
        raise ValueError("HMM selection needs validation sequences")
    best, trials = None, []
    for k in candidates or state_candidates(vocab):
        for seed in seeds:
            model = HMMModel.fit(vocab, fit_seqs, n_states=k, seed=seed, n_iter=n_iter,
                                 max_work=max_work)
            model.logloss = model.score_logloss(val_seqs)
            trials.append({"K": k, "seed": seed, "logloss": round(model.logloss, 5)})
            if best is None or model.logloss < best.logloss - 1e-12:
                best = model
    return best, trials


def remap(model: HMMModel, vocab: Vocabulary) -> HMMModel:
    """The same HMM over another vocabulary (matched by name; new steps get the smoothing mass),
    used to warm-start a refit on more data."""
    old = model.vocab
    cols = [old.code(a) if a in old else -1 for a in vocab.activities]
    cols += [old.end, old.unknown]
    B = np.where(np.array(cols) >= 0, model.emissionprob[:, np.maximum(cols, 0)],
                 EMISSION_EPS / vocab.n_symbols)
    B = B / B.sum(axis=1, keepdims=True)
    return HMMModel(vocab, model.startprob.copy(), model.transmat.copy(), B, seed=model.seed,
                    logloss=model.logloss)
