"""The workflow fingerprint: next-step predictors, timing and resources of one workflow.

How `Fingerprint.fit` chooses its predictor (no peeking at the data it reports on):
1. Instances in the rolling window are ordered by start; the newest 20% are the *held-out* set.
2. The older 80% (train) is split again: its newest 20% is the *validation* slice (at most the
   newest 2,000 instances), the rest is the *fit* part. Candidates fitted on the fit part:
   first-order Markov (`markov1`), k-gram models of order 2..k with backoff, the same conditioned on
   run metadata (up to 4 attribute keys with 2..min(50, n/5) values, jointly, and each alone), the HMM (K and seed chosen on validation log-loss) and a mixture
   `w * best k-gram + (1 - w) * HMM` with w in 0.1..0.9 chosen on validation log-loss. The best
   baseline on validation top-1 (markov1 or kgram(k), then top-3, then the simpler) is chosen
   unless another candidate beats it significantly (McNemar one-sided z >= 1.645 on the validation
   prefixes); the best of those significant challengers wins. So on validation the choice is never
   worse than the best baseline, and noise cannot pick an exotic model.
3. The chosen configuration and the baselines are refitted on train and scored on the held-out
   set (at most its newest 5,000 instances): that is `report`, the held-out top-1/top-3.
4. The deployed models are refitted on every instance of the window (the HMM warm-started).
With fewer than 10 instances there is no selection: the order-k model is used and the report says
why. Empty and one-run histories give a fingerprint whose predictions carry the reason instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..cases import Case
from .hmm import HMMModel
from .markov import MarkovModel
from .selection import Components, attr_keys, history_hash, markov_spec, select, spec_name, split_newest
from .serialise import read_bundle, write_bundle
from .symbols import Vocabulary
from .timing import Timing

SCHEMA = "shadow-dagster/fingerprint"
VERSION = 1
HOLDOUT_FRACTION = 0.2
VALIDATION_FRACTION = 0.2
MIN_CASES_FOR_SELECTION = 10
MAX_VALIDATION_CASES = 2000
MAX_HOLDOUT_CASES = 5000
MIN_PROBABILITY = 1e-3
EARLY_ETA_Q = 0.1            # NextStep.early_eta_seconds: the 10 % quantile of the time left


@dataclass(frozen=True)
class NextStep:
    activity: str
    probability: float
    eta_seconds: float | None      # expected seconds from now until the step starts
    early_eta_seconds: float | None = None   # 10 % of past instances reached it sooner than this


@dataclass
class Prediction:
    """Next steps of a live instance, or no prediction with the reason."""

    steps: list[NextStep] = field(default_factory=list)
    end_probability: float = 0.0
    expected_remaining_seconds: float | None = None
    predictor: str | None = None
    reason: str | None = None      # set when there is no prediction

    @property
    def ok(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ predictor specs
# ------------------------------------------------------------------ the fingerprint
class Fingerprint:
    """A per-workflow model of how instances run: predictor, timing, resources, accuracy."""

    def __init__(self, workflow: str, *, components: Components | None, choice: dict | None,
                 timing: Timing, report: dict, selection: list[dict], hmm_trials: list[dict],
                 params: dict, n_cases: int, n_excluded: int, reason: str | None,
                 history: str, content_hash: str | None = None):
        self.workflow, self.components, self.choice = workflow, components, choice
        self.timing, self.report, self.selection = timing, report, selection
        self.hmm_trials, self.params = hmm_trials, params
        self.n_cases, self.n_excluded, self.reason = n_cases, n_excluded, reason
        self.history, self.content_hash = history, content_hash

    @property
    def predictor(self) -> str | None:
        return spec_name(self.choice) if self.choice else None

    @property
    def vocab(self) -> Vocabulary | None:
        return self.components.vocab if self.components else None

    # ---------------------------------------------------------------- fitting
    @classmethod
    def fit(cls, cases: list[Case], *, window_days: float | None = 30, now: float | None = None,
            k: int = 3, seed: int = 0, previous: Fingerprint | None = None) -> Fingerprint:
        """Fit on the instances that started in [now - window_days, now] (now: latest event).

        When `previous` was fitted on exactly the same instances and parameters (same
        history_hash), it is returned unchanged: a refit on unchanged history is a no-op."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k (Markov order) must be an integer >= 1, got {k!r}")
        if window_days is not None and not window_days > 0:
            raise ValueError(f"window_days must be > 0 or None, got {window_days!r}")
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        bad = [c for c in cases if not isinstance(c, Case)]
        if bad:
            raise ValueError(f"cases must be Case objects, got {type(bad[0]).__name__}")
        workflows = sorted({c.workflow for c in cases})
        if len(workflows) > 1:
            raise ValueError(f"a fingerprint covers one workflow; got {len(workflows)}: "
                             f"{', '.join(workflows[:5])}")
        workflow = workflows[0] if workflows else ""
        cases = sorted((c for c in cases if c.events), key=lambda c: c.start)
        if now is None:
            now = max((max(e.end if e.end is not None else e.start for e in c.events)
                       for c in cases), default=0.0)
        kept = [c for c in cases if c.start <= now
                and (window_days is None or c.start >= now - window_days * 86400.0)]
        params = {"window_days": window_days, "now": now, "k": k, "seed": seed}
        history = history_hash(kept, **params)
        if previous is not None and previous.history == history:
            return previous
        common = dict(timing=Timing.from_cases(kept), params=params, n_cases=len(kept),
                      n_excluded=len(cases) - len(kept), history=history)
        if len(kept) < 2:
            reason = ("empty history: no workflow instances in the window" if not kept else
                      "one-run history: a single instance cannot show how runs vary")
            return cls(workflow, components=None, choice=None, report={}, selection=[],
                       hmm_trials=[], reason=reason, **common)
        keys = attr_keys(kept)
        if len(kept) < MIN_CASES_FOR_SELECTION:
            choice = markov_spec(k)
            return cls(workflow, components=Components.fit(kept, k, [()]), choice=choice,
                       report={"note": f"only {len(kept)} instances: no held-out evaluation, "
                                       f"using {spec_name(choice)}"},
                       selection=[], hmm_trials=[], reason=None, **common)
        train, holdout = split_newest(kept, HOLDOUT_FRACTION)
        fitp, val = split_newest(train, VALIDATION_FRACTION)
        choice, selection, hmm_sel, trials = select(fitp, val[-MAX_VALIDATION_CASES:], k, seed,
                                                     keys)
        chosen_cond = tuple(choice.get("condition_on") or choice.get("markov", {})
                            .get("condition_on") or ())
        cond_sets = [chosen_cond] + ([tuple(keys)] if keys else [])
        comps = Components.fit(train, k, cond_sets, hmm_init=hmm_sel)
        report = cls._heldout(comps, holdout[-MAX_HOLDOUT_CASES:], choice, k, keys, chosen_cond)
        deployed = Components.fit(kept, k, [chosen_cond], hmm_init=comps.hmm)
        return cls(workflow, components=deployed, choice=choice, report=report,
                   selection=selection, hmm_trials=trials, reason=None, **common)

    @staticmethod
    def _heldout(comps: Components, holdout: list[Case], choice: dict, k: int,
                 keys: list[str], chosen_cond: tuple) -> dict:
        seqs = [comps.vocab.encode(c.activities) for c in holdout]
        report = {"cases": len(holdout), "prefixes": int(sum(len(s) for s in seqs))}
        report["markov1"] = comps.accuracy(markov_spec(1), holdout)
        report["kgram"] = {"k": k, **comps.accuracy(markov_spec(k), holdout)}
        cond = list(chosen_cond) or keys
        if cond:
            report["kgram_conditioned"] = {"k": k, "condition_on": cond,
                                           **comps.accuracy(markov_spec(k, cond), holdout)}
        if comps.hmm is not None:
            report["hmm"] = {"K": comps.hmm.n_states, "seed": comps.hmm.seed,
                             **comps.accuracy({"kind": "hmm"}, holdout)}
        report["fingerprint"] = {"predictor": spec_name(choice),
                                 **comps.accuracy(choice, holdout)}
        for entry in report.values():
            if isinstance(entry, dict):
                entry.pop("prefixes", None)
        return report

    # ------------------------------------------------------------- prediction
    def predict(self, prefix_activities: Sequence[str], attrs: Mapping[str, str] | None = None,
                elapsed: float | None = None, *, top: int = 10) -> Prediction:
        """Next steps after the steps started so far; `elapsed` is the seconds since the last of
        them started (ETAs and the remaining duration are conditioned on it)."""
        prefix = [str(a) for a in prefix_activities]
        if self.reason is not None:
            return Prediction(reason=self.reason)
        vocab = self.components.vocab
        unseen = [a for a in dict.fromkeys(prefix) if a not in vocab]
        if unseen:
            return Prediction(predictor=self.predictor,
                              reason=f"unseen step(s) {', '.join(map(repr, unseen))}: not in the "
                                     f"history of workflow {self.workflow!r}")
        if elapsed is not None and not (isinstance(elapsed, (int, float)) and elapsed >= 0):
            raise ValueError(f"elapsed must be a number of seconds >= 0, got {elapsed!r}")
        p = self.components.proba(self.choice, vocab.encode(prefix), attrs or {})
        last = prefix[-1] if prefix else None
        acts = p[: vocab.n_activities]
        order = np.argsort(-acts, kind="stable")[:top]
        steps = [NextStep(vocab.activities[i], round(float(acts[i]), 6),
                          self.timing.eta(last, vocab.activities[i], elapsed),
                          self.timing.early_eta(last, vocab.activities[i], elapsed, EARLY_ETA_Q))
                 for i in order if acts[i] >= MIN_PROBABILITY]
        return Prediction(steps=steps, end_probability=round(float(p[vocab.end]), 6),
                          expected_remaining_seconds=self.timing.expected_remaining(last, elapsed),
                          predictor=self.predictor)

    # ---------------------------------------------------------------- summary
    def summary(self) -> dict:
        return {
            "workflow": self.workflow, "schema": SCHEMA, "version": VERSION,
            "predictor": self.predictor, "reason": self.reason,
            "instances": self.n_cases, "excluded_by_window": self.n_excluded,
            "params": self.params,
            "vocabulary": self.vocab.n_activities if self.vocab else 0,
            "heldout": self.report,
            "selection": [{k: v for k, v in row.items() if k != "spec"} for row in self.selection],
            "hmm": ({"K": self.components.hmm.n_states, "seed": self.components.hmm.seed,
                     "validation_logloss": self.components.hmm.logloss, "trials": self.hmm_trials}
                    if self.components and self.components.hmm else None),
            "timing": self.timing.summary(),
            "history_hash": self.history, "content_hash": self.content_hash,
        }

    # ---------------------------------------------------------- serialisation
    def save(self, path: str | os.PathLike) -> str:
        """Write JSON + numpy arrays (no pickle) to `path`; return and record the content hash."""
        meta = {"schema": SCHEMA, "version": VERSION, "workflow": self.workflow,
                "choice": self.choice, "report": self.report, "selection": self.selection,
                "hmm_trials": self.hmm_trials, "params": self.params, "n_cases": self.n_cases,
                "n_excluded": self.n_excluded, "reason": self.reason, "history": self.history}
        arrays: dict[str, np.ndarray] = {}
        tmeta, tarr = self.timing.state("t_")
        meta["timing"] = tmeta
        arrays.update(tarr)
        if self.components is not None:
            c = self.components
            meta["vocabulary"] = c.vocab.activities
            meta["markov"] = []
            for i, model in enumerate(c.markov.values()):
                mmeta, marr = model.state(f"m{i}_")
                meta["markov"].append(mmeta)
                arrays.update(marr)
            meta["hmm"] = None
            if c.hmm is not None:
                meta["hmm"], harr = c.hmm.state("hmm_")
                arrays.update(harr)
        self.content_hash = write_bundle(path, meta, arrays)
        return self.content_hash

    @classmethod
    def load(cls, path: str | os.PathLike) -> Fingerprint:
        """Read a file written by save(); FingerprintFormatError names the file and problem."""
        from .serialise import FingerprintFormatError

        meta, arrays, digest = read_bundle(path, SCHEMA, {VERSION})
        try:
            components = None
            if meta.get("vocabulary") is not None:
                vocab = Vocabulary(meta["vocabulary"])
                markov = {}
                for i, mmeta in enumerate(meta["markov"]):
                    model = MarkovModel.from_state(vocab, mmeta, arrays, f"m{i}_")
                    markov[model.condition_on] = model
                hmm = (HMMModel.from_state(vocab, meta["hmm"], arrays, "hmm_")
                       if meta.get("hmm") else None)
                components = Components(vocab, markov, hmm)
            return cls(meta["workflow"], components=components, choice=meta["choice"],
                       timing=Timing.from_state(meta["timing"], arrays, "t_"),
                       report=meta["report"], selection=meta["selection"],
                       hmm_trials=meta["hmm_trials"], params=meta["params"],
                       n_cases=meta["n_cases"], n_excluded=meta["n_excluded"],
                       reason=meta["reason"], history=meta["history"], content_hash=digest)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise FingerprintFormatError(path, f"inconsistent content: {exc!r}") from None
