"""Candidate next-step predictors of a fingerprint and how one is chosen on validation only.

`Components` holds the models fitted on one set of instances (k-gram Markov models, unconditioned
and conditioned on run metadata, and the HMM); `select` scores every candidate on the validation
slice and keeps the best baseline unless a challenger beats it significantly (see
`shadow_dagster.fingerprint.model` for the whole protocol).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import numpy as np

from ..cases import Case
from .hmm import REFIT_ITER, HMMModel, remap, select_hmm
from .markov import MarkovModel
from .metrics import next_targets, ranked, topk_accuracy
from .symbols import Vocabulary

MIXTURE_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MAX_ATTR_VALUES = 50
MAX_CONDITION_KEYS = 4
Z_SWITCH = 1.645             # one-sided 5% McNemar test to leave the best baseline


def spec_name(spec: Mapping) -> str:
    kind = spec["kind"]
    if kind == "markov":
        cond = spec.get("condition_on") or []
        if spec["order"] == 1 and not cond:
            return "markov1"
        return f"kgram(k={spec['order']}" + (f"|{','.join(cond)})" if cond else ")")
    if kind == "hmm":
        return "hmm"
    if kind == "mixture":
        w = spec["weight"]
        return f"mixture({w:.2f}*{spec_name(spec['markov'])}+{1 - w:.2f}*hmm)"
    raise ValueError(f"unknown predictor kind {kind!r}")


def markov_spec(order: int, cond: Sequence[str] = ()) -> dict:
    return {"kind": "markov", "order": order, "condition_on": list(cond)}


class Components:
    """Models fitted on one set of instances, over one vocabulary."""

    def __init__(self, vocab: Vocabulary, markov: dict[tuple[str, ...], MarkovModel],
                 hmm: HMMModel | None):
        self.vocab, self.markov, self.hmm = vocab, markov, hmm

    @classmethod
    def fit(cls, cases: Sequence[Case], k: int, cond_sets: Sequence[tuple[str, ...]],
            hmm_init: HMMModel | None = None) -> Components:
        vocab = Vocabulary.from_sequences(c.activities for c in cases)
        seqs = [vocab.encode(c.activities) for c in cases]
        attrs = [c.attrs for c in cases]
        markov = {cs: MarkovModel(vocab, k, cs).fit(seqs, attrs) for cs in dict.fromkeys(cond_sets)}
        hmm = None
        if hmm_init is not None:
            hmm = HMMModel.fit(vocab, seqs, n_states=hmm_init.n_states, seed=hmm_init.seed,
                               n_iter=REFIT_ITER, init=remap(hmm_init, vocab))
            hmm.logloss = hmm_init.logloss
        return cls(vocab, markov, hmm)

    def _model(self, cond: Sequence[str]) -> MarkovModel:
        if tuple(cond) in self.markov:
            return self.markov[tuple(cond)]
        if not cond:
            return next(iter(self.markov.values()))   # every model has the unconditioned levels
        raise KeyError(f"no Markov model conditioned on {list(cond)}")

    def proba_prefixes(self, spec: Mapping, seqs, attrs) -> np.ndarray:
        kind = spec["kind"]
        if kind == "markov":
            cond = spec["condition_on"]
            return self._model(cond).proba_prefixes(seqs, attrs, order=spec["order"],
                                                    conditioned=bool(cond))
        if kind == "hmm":
            return self.hmm.proba_prefixes(seqs)
        w = spec["weight"]
        return (w * self.proba_prefixes(spec["markov"], seqs, attrs)
                + (1 - w) * self.hmm.proba_prefixes(seqs))

    def proba(self, spec: Mapping, prefix: np.ndarray, attrs) -> np.ndarray:
        kind = spec["kind"]
        if kind == "markov":
            cond = spec["condition_on"]
            return self._model(cond).proba(prefix, attrs, order=spec["order"],
                                           conditioned=bool(cond))
        if kind == "hmm":
            return self.hmm.proba(prefix)
        w = spec["weight"]
        return w * self.proba(spec["markov"], prefix, attrs) + (1 - w) * self.hmm.proba(prefix)

    def accuracy(self, spec: Mapping, cases: Sequence[Case]) -> dict:
        seqs = [self.vocab.encode(c.activities) for c in cases]
        proba = self.proba_prefixes(spec, seqs, [c.attrs for c in cases])
        return topk_accuracy(proba, next_targets(seqs, self.vocab), self.vocab)


# ------------------------------------------------------------------ helpers
def split_newest(cases: Sequence[Case], fraction: float) -> tuple[list[Case], list[Case]]:
    """(older, newest `fraction`) of start-ordered cases, each side non-empty."""
    n_new = min(len(cases) - 1, max(1, round(len(cases) * fraction)))
    return list(cases[: len(cases) - n_new]), list(cases[len(cases) - n_new:])


def attr_keys(cases: Sequence[Case]) -> list[str]:
    """Attribute keys worth conditioning on: at least two values (a missing key counts as the
    value ""), at most min(50, n/5) values (identifier-like keys such as run ids or partition
    dates would only fragment the counts); at most 4 keys, those with the fewest values first."""
    values: dict[str, set] = {}
    for c in cases:
        for key, val in c.attrs.items():
            values.setdefault(str(key), set()).add(str(val))
    for key, vals in values.items():
        if any(key not in c.attrs for c in cases):
            vals.add("")
    limit = max(2, min(MAX_ATTR_VALUES, len(cases) // 5))
    keys = sorted((k for k, v in values.items() if 2 <= len(v) <= limit),
                  key=lambda k: (len(values[k]), k))
    return sorted(keys[:MAX_CONDITION_KEYS])


def history_hash(cases: Sequence[Case], **params) -> str:
    """SHA-256 of the instances (ids, steps, times, attrs) and fit parameters: an unchanged hash
    means a refit would reproduce the same fingerprint."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for c in cases:
        h.update(json.dumps([c.case_id, sorted(c.attrs.items()),
                             [(e.activity, e.start, e.end, e.resource) for e in c.events]],
                            default=str).encode())
    return h.hexdigest()


def select(fit: list[Case], val: list[Case], k: int, seed: int, keys: list[str]):
    """Fit candidates on `fit`, score them on `val`; return (chosen spec, table, hmm, trials).

    The best baseline on validation (markov1 or kgram(k), unconditioned) is kept unless another
    candidate (other orders, conditioned, HMM, mixture) beats it significantly: McNemar's one-sided
    z >= Z_SWITCH over the prefixes one gets right and the other wrong. A small validation slice
    therefore cannot swap in a candidate whose advantage is noise.
    """
    comps = Components.fit(fit, k, [()] + ([tuple(keys)] if keys else [])
                           + ([(key,) for key in keys] if len(keys) > 1 else []))
    vocab = comps.vocab
    vseqs = [vocab.encode(c.activities) for c in val]
    vattrs = [c.attrs for c in val]
    targets = next_targets(vseqs, vocab)
    candidates = [markov_spec(j) for j in range(1, k + 1)]
    if keys:
        candidates += [markov_spec(j, keys) for j in range(1, k + 1)]
        candidates += [markov_spec(k, (key,)) for key in keys] if len(keys) > 1 else []
    table, hits = [], []

    def score(spec, proba):
        acc = topk_accuracy(proba, targets, vocab)
        table.append({"predictor": spec_name(spec), "spec": spec, "top1": acc["top1"],
                      "top3": acc["top3"]})
        hits.append(ranked(proba, vocab, 1)[:, 0] == targets)

    for spec in candidates:
        score(spec, comps.proba_prefixes(spec, vseqs, vattrs))
    baselines = [0, k - 1]
    hmm, trials = None, []
    if len(fit) >= 2 and len(targets):
        hmm, trials = select_hmm(vocab, [vocab.encode(c.activities) for c in fit], vseqs,
                                 seeds=(seed, seed + 1))
        p_hmm = hmm.proba_prefixes(vseqs)
        score({"kind": "hmm"}, p_hmm)
        best_m = max(range(len(candidates)),
                     key=lambda i: (table[i]["top1"], table[i]["top3"], -i))
        p_markov = comps.proba_prefixes(candidates[best_m], vseqs, vattrs)
        rows = np.arange(len(targets))
        pm, ph = p_markov[rows, targets], p_hmm[rows, targets]
        w = min(MIXTURE_WEIGHTS, key=lambda w: -np.log(np.maximum(w * pm + (1 - w) * ph,
                                                                   1e-12)).mean())
        score({"kind": "mixture", "weight": w, "markov": candidates[best_m]},
              w * p_markov + (1 - w) * p_hmm)

    def rank(i):
        return (table[i]["top1"], table[i]["top3"], -i)

    base = max(baselines, key=rank)
    chosen = base
    for i in sorted(set(range(len(table))) - set(baselines), key=rank, reverse=True):
        better = int((hits[i] & ~hits[base]).sum())
        worse = int((hits[base] & ~hits[i]).sum())
        z = (better - worse) / np.sqrt(better + worse) if better + worse else 0.0
        table[i]["z_vs_best_baseline"] = round(float(z), 3)
        if z >= Z_SWITCH and rank(i) > rank(chosen):
            chosen = i
    for i, row in enumerate(table):
        row["baseline"] = i in baselines
        row["chosen"] = i == chosen
    return table[chosen]["spec"], table, hmm, trials


__all__ = ["Components", "attr_keys", "history_hash", "markov_spec", "select", "spec_name", "split_newest"]
