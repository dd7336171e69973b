"""Fingerprint benchmark: fit time and memory vs history size, prediction latency, accuracy.

- Fit: generated histories of a 30-step workflow with regimes (synthetic.regime_history, run
  metadata observable) of 1k, 10k and 30k instances. Each size is generated and fitted in a fresh
  process so that its peak RSS (resource.getrusage) is its own; `fit_rss_mb` is the growth of the
  peak during the fit, `peak_rss_mb` the process peak (interpreter, numpy, pandas and the history
  included). Generation time is not counted.
- Latency: Fingerprint.predict on the 30k-instance fingerprint (loaded back from its file) for
  prefixes of held-out instances, one call at a time, p50/p99.
- Regimes: held-out accuracy on 2,000 generated instances with 60 step names (30 positions, 4
  alternatives per branch point), regimes hidden and observable, as in issue 3's measurement.
- Accuracy: evaluate_log on receipt.csv (J.C.A.M. Buijs, Receipt phase of an environmental permit
  application process (WABO), CoSeLoG project, 4TU.ResearchData) for k = 3 and 4.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

RECEIPT = Path("/work/shared/data/receipt.csv")
SIZES = (1000, 10000, 30000)
N_STEPS = 30
TARGETS = {"fit_30k_seconds": 60.0, "predict_p99_ms": 1.0}


def _fit_one(n: int, path: str) -> dict:
    from shadow_dagster.fingerprint.model import Fingerprint
    from .synthetic import regime_history

    cases = regime_history(n, n_steps=N_STEPS, seed=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    fp = Fingerprint.fit(cases, window_days=None, seed=0)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fp.save(path)
    return {"instances": n, "events": sum(len(c.events) for c in cases),
            "steps": fp.vocab.n_activities, "fit_seconds": round(seconds, 2),
            "fit_rss_mb": round((peak - before) / 1024, 1), "peak_rss_mb": round(peak / 1024, 1),
            "predictor": fp.predictor, "hmm_K": fp.components.hmm.n_states,
            "heldout": {m: {"top1": v["top1"], "top3": v["top3"]}
                        for m, v in fp.report.items() if isinstance(v, dict)}}


def _latency(path: str, n: int, calls: int = 3000) -> dict:
    from shadow_dagster.fingerprint.model import Fingerprint
    from .synthetic import regime_history

    fp = Fingerprint.load(path)
    cases = regime_history(n, n_steps=N_STEPS, seed=0)[-500:]
    rng = np.random.default_rng(0)
    queries = []
    for _ in range(calls):
        c = cases[int(rng.integers(len(cases)))]
        t = int(rng.integers(len(c.events) + 1))
        queries.append((c.activities[:t], c.attrs, float(rng.uniform(0, 60))))
    for q in queries[:50]:
        fp.predict(*q)                                      # warm-up
    times = []
    for prefix, attrs, elapsed in queries:
        t0 = time.perf_counter_ns()
        fp.predict(prefix, attrs, elapsed)
        times.append(time.perf_counter_ns() - t0)
    ms = np.array(times) / 1e6
    return {"calls": calls, "instances": n, "predictor": fp.predictor,
            "p50_ms": round(float(np.percentile(ms, 50)), 4),
            "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "max_ms": round(float(ms.max()), 4)}


def _regimes(observable: bool) -> dict:
    from shadow_dagster.fingerprint.model import Fingerprint
    from .synthetic import regime_history

    cases = regime_history(2000, n_steps=N_STEPS, n_alternatives=4, seed=7, observable=observable)
    fp = Fingerprint.fit(cases, window_days=None, seed=0)
    return {"steps": fp.vocab.n_activities, "predictor": fp.predictor,
            **{m: {"top1": v["top1"], "top3": v["top3"]} for m, v in fp.report.items()
               if isinstance(v, dict)}}


def run(json_out: bool = False, sizes: tuple[int, ...] = SIZES) -> dict:
    """Run the benchmark; print a table (or, with json_out, one JSON object as the last line)."""
    from shadow_dagster.fingerprint.evaluate import CITATION, evaluate_log
    from shadow_dagster.fingerprint.log import read_event_log

    ctx = mp.get_context("spawn")
    fits = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = os.path.join(tmp, f"fp{n}.npz")
            with ctx.Pool(1) as pool:
                fits.append(pool.apply(_fit_one, (n, path)))
            if not json_out:
                f = fits[-1]
                print(f"fit {n:>6} instances ({f['events']} events): {f['fit_seconds']:6.2f} s, "
                      f"+{f['fit_rss_mb']} MB (peak {f['peak_rss_mb']} MB), {f['predictor']}",
                      flush=True)
        latency = _latency(os.path.join(tmp, f"fp{sizes[-1]}.npz"), sizes[-1])
    regimes = {"hidden": _regimes(False), "observable": _regimes(True)}
    receipt = {}
    if RECEIPT.is_file():
        cases = read_event_log(RECEIPT)
        receipt = {f"k{k}": evaluate_log(cases, k=k) for k in (3, 4)}
        receipt["citation"] = CITATION
    result = {"fit": fits, "predict": latency, "regimes": regimes, "receipt": receipt,
              "targets": TARGETS,
              "cpus": os.cpu_count()}
    if json_out:
        print(json.dumps(result))
    else:
        print(f"predict ({latency['calls']} calls, {latency['instances']}-instance fingerprint): "
              f"p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms")
        for key, r in regimes.items():
            print(f"generated regimes ({key}, 2000 instances, {r['steps']} steps, held-out "
                  f"top-1): " + ", ".join(f"{m} {r[m]['top1']}" for m in
                                           ("fingerprint", "markov1", "kgram",
                                            "kgram_conditioned", "hmm") if m in r)
                  + f"; predictor {r['predictor']}")
        for key, r in receipt.items():
            if key == "citation":
                continue
            print(f"receipt.csv {key}: fingerprint {r['fingerprint']['top1']}/"
                  f"{r['fingerprint']['top3']} ({r['predictor']}), markov1 "
                  f"{r['markov1']['top1']}/{r['markov1']['top3']}, kgram(k={r['kgram']['k']}) "
                  f"{r['kgram']['top1']}/{r['kgram']['top3']}, hmm {r['hmm']['top1']}/"
                  f"{r['hmm']['top3']}  (top-1/top-3; {r['cases']} cases, {r['prefixes']} prefixes)")
        if receipt:
            print(f"Log: {receipt['citation']}")
    return result
