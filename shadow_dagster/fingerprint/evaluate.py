"""Next-activity evaluation of a fingerprint and its baselines on an event log.

Protocol (/work/shared/data/README.md): cases ordered by first event; the first `train_fraction`
(two thirds) trains, the rest is predicted; for every non-empty prefix of every test case the
next activity is predicted, the end of the case included. A test activity never seen in training
is a miss. The fingerprint is fitted on the training cases only (no window) and picks its
predictor on a validation slice of them; the baselines are the first-order Markov chain, the
order-k model with backoff and the HMM it fitted on the same training cases.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..cases import Case
from .model import Fingerprint
from .selection import markov_spec

CITATION = ("J.C.A.M. Buijs, Receipt phase of an environmental permit application process "
            "(WABO), CoSeLoG project, 4TU.ResearchData")


def evaluate_log(cases: Sequence[Case], train_fraction: float = 2 / 3, *, k: int = 3,
                 seed: int = 0) -> dict:
    """Return {"fingerprint": {top1, top3}, "markov1": {...}, "kgram": {k, top1, top3},
    "hmm": {K, top1, top3} or None, "predictor": str, "cases": n_test, "prefixes": n}."""
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be between 0 and 1, got {train_fraction!r}")
    ordered = sorted((c for c in cases if c.events), key=lambda c: c.start)
    n_train = round(len(ordered) * train_fraction)
    if n_train < 2 or len(ordered) - n_train < 1:
        raise ValueError(f"need at least 2 training and 1 test case with events; got "
                         f"{len(ordered)} cases")
    train, test = ordered[:n_train], ordered[n_train:]
    fp = Fingerprint.fit(train, window_days=None, k=k, seed=seed)
    comps = fp.components

    def acc(spec) -> dict:
        result = comps.accuracy(spec, test)
        return {"top1": result["top1"], "top3": result["top3"]}

    prefixes = comps.accuracy(fp.choice, test)["prefixes"]
    return {
        "fingerprint": acc(fp.choice),
        "markov1": acc(markov_spec(1)),
        "kgram": {"k": k, **acc(markov_spec(k))},
        "hmm": ({"K": comps.hmm.n_states, **acc({"kind": "hmm"})} if comps.hmm else None),
        "predictor": fp.predictor,
        "cases": len(test),
        "prefixes": prefixes,
    }
