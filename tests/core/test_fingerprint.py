"""Fingerprint core: event log, Markov/HMM models, selection, timing, file format, evaluation.

Results on receipt.csv are from: J.C.A.M. Buijs, Receipt phase of an environmental permit
application process (WABO), CoSeLoG project, 4TU.ResearchData.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from shadow_dagster.cases import Case, Event
from shadow_dagster.fingerprint import (END, UNKNOWN, Fingerprint, FingerprintFormatError,
                                        MarkovModel, Vocabulary, evaluate_log, read_event_log)
from shadow_dagster.fingerprint.hmm import HMMModel, select_hmm
from shadow_dagster_bench.synthetic import regime_history
from shadow_dagster.fingerprint.timing import Dist, Timing

RECEIPT = Path("/work/shared/data/receipt.csv")


def case(cid, steps, t0=0.0, attrs=None, step=10.0, workflow="wf"):
    return Case(cid, workflow, [Event(a, t0 + i * step, t0 + i * step + step / 2)
                                for i, a in enumerate(steps)], dict(attrs or {}))


@pytest.fixture(scope="module")
def receipt():
    return read_event_log(RECEIPT)


@pytest.fixture(scope="module")
def hidden_regimes():
    """Regimes invisible in the metadata: only the steps taken so far reveal them."""
    cases = regime_history(1500, n_steps=12, seed=1, observable=False)
    return cases, Fingerprint.fit(cases, window_days=None, seed=0)


@pytest.fixture(scope="module")
def observable_regimes():
    cases = regime_history(1500, n_steps=12, seed=1, observable=True)
    return cases, Fingerprint.fit(cases, window_days=None, seed=0)


# ------------------------------------------------------------------ event log
def test_receipt_log_shape_and_order(receipt):
    assert len(receipt) == 1434
    assert sum(len(c.events) for c in receipt) == 8577
    assert len({e.activity for c in receipt for e in c.events}) == 27
    starts = [c.start for c in receipt]
    assert starts == sorted(starts)
    for c in receipt:
        times = [e.start for e in c.events]
        assert times == sorted(times)
        assert all(e.end is None for e in c.events)


def test_log_ties_keep_file_order_and_offsets_are_utc(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("case_id,activity,timestamp,resource,extra\n"
                 "b,late,2020-01-01 12:00:00+01:00,r1,x\n"
                 "a,first,2020-01-01 10:30:00+00:00,r2,x\n"
                 "b,tie1,2020-01-01 10:00:00+00:00,,x\n"
                 "b,tie2,2020-01-01 11:00:00+01:00,r3,x\n")
    cases = read_event_log(p)
    assert [c.case_id for c in cases] == ["b", "a"]       # b starts 10:00 UTC, a at 10:30 UTC
    assert cases[0].activities == ["tie1", "tie2", "late"]
    assert cases[0].events[0].resource is None and cases[0].events[1].resource == "r3"
    assert cases[0].events[2].start - cases[0].events[0].start == 3600.0
    assert cases[0].workflow == "log"


def test_log_accepts_other_timestamp_spellings(tmp_path):
    p = tmp_path / "other.csv"
    p.write_text("case_id,activity,timestamp\nc,a,2020-01-01T00:00:00Z\nc,b,01 Jan 2020 00:01:00\n")
    (c,) = read_event_log(p, workflow="w")
    assert c.workflow == "w" and c.events[1].start - c.events[0].start == 60.0


@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ("case_id,activity,timestamp\n", "no events"),
    ("case_id,timestamp\nc,2020-01-01T00:00:00Z\n", "missing column(s) 'activity'"),
    ("case_id,activity,timestamp\nc,a,2020-01-01T00:00:00Z\nc,b,yesterday\n",
     "row 2 (line 3): unparsable timestamp 'yesterday'"),
    ("case_id,activity,timestamp\nc,,2020-01-01T00:00:00Z\n", "row 1 (line 2): empty 'activity'"),
])
def test_log_errors_name_the_problem(tmp_path, content, message):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(ValueError) as err:
        read_event_log(p)
    assert message in str(err.value) and str(p) in str(err.value)


def test_log_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such event log"):
        read_event_log(tmp_path / "nope.csv")


# ------------------------------------------------------------------ Markov
def test_markov_counts_backoff_and_unknown():
    seqs = [["a", "b", "c"]] * 3 + [["a", "b", "d"]]
    vocab = Vocabulary.from_sequences(seqs)
    m = MarkovModel(vocab, order=2).fit([vocab.encode(s) for s in seqs])
    pred = dict(m.predict(["a", "b"]))
    assert max(pred, key=pred.get) == "c" and pred["c"] > pred["d"] > 0
    assert pred["c"] + pred["d"] > 0.9
    assert m.predict(["a", "b", "c"])[0][0] == END
    # unseen context (b, a) backs off to the order-1 context (a) -> b
    assert m.predict(["b", "a"])[0][0] == "b"
    # unseen activity maps to UNKNOWN: no crash, unigram fallback, UNKNOWN never predicted
    out = m.predict(["zzz"])
    assert abs(sum(p for _, p in out) - 1.0) < 1e-9 and UNKNOWN not in dict(out)
    p1 = dict(m.predict(["a", "b"], order=1))
    assert p1 == pytest.approx(pred, abs=0.2) and p1["c"] < pred["c"] + 1e-12
    with pytest.raises(ValueError, match="order must be"):
        m.predict(["a"], order=3)
    with pytest.raises(ValueError, match="Markov order must be"):
        MarkovModel(vocab, order=0)


def test_markov_conditioning_and_backoff_to_unconditioned():
    seqs = [["s", "x"]] * 6 + [["s", "y"]] * 4
    attrs = [{"day": "mon"}] * 6 + [{"day": "sat"}] * 4
    vocab = Vocabulary.from_sequences(seqs)
    m = MarkovModel(vocab, order=1, condition_on=("day",))
    m.fit([vocab.encode(s) for s in seqs], attrs)
    assert m.predict(["s"], {"day": "mon"})[0][0] == "x"
    assert m.predict(["s"], {"day": "sat"})[0][0] == "y"
    unseen = dict(m.predict(["s"], {"day": "sun"}))          # backs off to unconditioned
    assert unseen == pytest.approx(dict(m.predict(["s"], conditioned=False)))
    assert unseen["x"] > unseen["y"]


def test_markov_batch_equals_single():
    seqs = [c.activities for c in regime_history(200, n_steps=8, seed=3)]
    vocab = Vocabulary.from_sequences(seqs)
    enc = [vocab.encode(s) for s in seqs]
    m = MarkovModel(vocab, order=3).fit(enc[:150])
    batch = m.proba_prefixes(enc[150:], include_empty=True)
    rows = [m.proba(s[:t]) for s in enc[150:] for t in range(len(s) + 1)]
    assert np.allclose(batch, np.array(rows))
    assert np.allclose(batch.sum(axis=1), 1.0)


# ------------------------------------------------------------------ HMM
def test_hmm_selection_and_unknown_steps():
    cases = regime_history(300, n_steps=8, seed=2, observable=False)
    vocab = Vocabulary.from_sequences(c.activities for c in cases[:240])
    enc = [vocab.encode(c.activities) for c in cases]
    hmm, trials = select_hmm(vocab, enc[:200], enc[200:240], candidates=[4, 12], seeds=(0, 1))
    assert len(trials) == 4
    assert hmm.logloss == pytest.approx(min(t["logloss"] for t in trials), abs=1e-5)
    p = hmm.proba_prefixes(enc[240:])
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.allclose(hmm.proba(enc[240][:3]), p[2])
    weird = np.array([vocab.code("s00"), vocab.unknown, vocab.unknown])
    assert np.isfinite(hmm.proba(weird)).all()        # hmmlearn would raise on unseen symbols
    with pytest.raises(ValueError, match="n_states"):
        HMMModel.fit(vocab, enc, n_states=0)


def test_hmm_beats_first_order_markov_where_regimes_matter(hidden_regimes):
    _, fp = hidden_regimes
    r = fp.report
    # Measured: hmm 0.853 vs markov1 0.825 top-1 on 300 held-out instances (3,343 prefixes).
    assert r["hmm"]["top1"] >= r["markov1"]["top1"] + 0.015
    best_baseline = max(r["markov1"]["top1"], r["kgram"]["top1"])
    assert r["fingerprint"]["top1"] >= best_baseline - 0.005
    chosen = [row for row in fp.selection if row["chosen"]]
    assert len(chosen) == 1
    assert chosen[0]["top1"] >= max(row["top1"] for row in fp.selection if row["baseline"])


def test_conditioning_on_run_metadata_wins_when_observable(observable_regimes):
    _, fp = observable_regimes
    r = fp.report
    assert "|" in fp.predictor                          # a conditioned k-gram
    assert r["kgram_conditioned"]["top1"] >= r["kgram"]["top1"] + 0.02
    assert r["fingerprint"]["top1"] >= max(r["markov1"]["top1"], r["kgram"]["top1"]) + 0.02


def test_identifier_like_and_constant_attributes_are_not_conditioned_on():
    from shadow_dagster.fingerprint.selection import attr_keys as _attr_keys
    cases = [case(f"c{i}", ["a"], attrs={"run_id": f"r{i}", "schedule": "daily",
                                         "day": "mon" if i % 2 else "sat", "a1": str(i % 3),
                                         "a2": str(i % 4), "a3": str(i % 5), "a4": str(i % 6)})
             for i in range(100)]
    assert _attr_keys(cases) == ["a1", "a2", "a3", "day"]
    cases[0].attrs.pop("schedule")                    # missing counts as another value
    assert "schedule" in _attr_keys(cases)


# ------------------------------------------------------------------ receipt evaluation
def test_receipt_evaluation_protocol(receipt):
    out = evaluate_log(receipt)
    assert set(out) == {"fingerprint", "markov1", "kgram", "hmm", "predictor", "cases", "prefixes"}
    assert set(out["kgram"]) == {"k", "top1", "top3"} and out["kgram"]["k"] == 3
    assert out["cases"] == 478 and out["prefixes"] == 2748
    # README: k-order Markov with backoff ~0.86 (k=1) to ~0.90 (k=4). Measured 0.855 / 0.884.
    assert 0.84 <= out["markov1"]["top1"] <= 0.87
    assert out["kgram"]["top1"] >= 0.875 and out["kgram"]["top3"] >= 0.98
    assert out["hmm"]["top1"] >= 0.85
    best = max(out[m]["top1"] for m in ("markov1", "kgram", "hmm"))
    assert out["fingerprint"]["top1"] >= best - 0.003
    assert json.loads(json.dumps(out)) == out


def test_receipt_fourth_order(receipt):
    out = evaluate_log(receipt, k=4)
    assert out["kgram"]["top1"] >= 0.89                  # measured 0.897
    assert out["fingerprint"]["top1"] >= out["kgram"]["top1"] - 0.003


def test_evaluate_log_rejects_bad_input(receipt):
    with pytest.raises(ValueError, match="train_fraction"):
        evaluate_log(receipt, train_fraction=1.5)
    with pytest.raises(ValueError, match="at least 2 training"):
        evaluate_log(receipt[:2])


# ------------------------------------------------------------------ fingerprint API
def test_prediction_with_eta_and_remaining(hidden_regimes):
    cases, fp = hidden_regimes
    acts = cases[-1].activities
    prefix = acts[: next(i for i, a in enumerate(acts) if a.startswith("s02")) + 1]
    pred = fp.predict(prefix, elapsed=0.0)        # after the branch step s02x, s03 always follows
    assert pred.ok and pred.steps[0].activity == "s03"
    assert pred.steps[0].probability > 0.9
    eta0 = pred.steps[0].eta_seconds
    waits = [c.events[i + 1].start - e.start for c in cases for i, e in enumerate(c.events)
             if e.activity == prefix[-1] and c.events[i + 1].activity == "s03"]
    assert eta0 == pytest.approx(np.mean(waits), rel=0.01)
    later = fp.predict(prefix, elapsed=eta0 / 2)
    assert later.steps[0].eta_seconds < eta0
    assert later.expected_remaining_seconds < pred.expected_remaining_seconds
    first = fp.predict([])
    assert first.ok and first.steps[0].activity == "s00"
    done = fp.predict(cases[-1].activities)
    assert done.end_probability > 0.9
    assert pred.to_dict()["steps"][0]["activity"] == "s03"


def test_no_prediction_answers():
    empty = Fingerprint.fit([])
    assert not empty.predict(["a"]).ok and "empty history" in empty.predict(["a"]).reason
    one = Fingerprint.fit([case("c1", ["a", "b"])])
    assert "one-run history" in one.predict(["a"]).reason and one.predict([]).steps == []
    few = Fingerprint.fit([case(f"c{i}", ["a", "b"], t0=i * 100) for i in range(3)])
    assert few.predict(["a"]).steps[0].activity == "b" and "no held-out" in few.report["note"]
    unseen = few.predict(["a", "mystery"])
    assert not unseen.ok and "unseen step(s) 'mystery'" in unseen.reason
    assert few.summary()["predictor"] == "kgram(k=3)"


def test_fit_rejects_bad_arguments():
    cases = [case("c", ["a"])]
    with pytest.raises(ValueError, match="k .Markov order"):
        Fingerprint.fit(cases, k=0)
    with pytest.raises(ValueError, match="window_days"):
        Fingerprint.fit(cases, window_days=-1)
    with pytest.raises(ValueError, match="one workflow"):
        Fingerprint.fit([case("a", ["x"]), case("b", ["x"], workflow="other")])
    with pytest.raises(ValueError, match="Case objects"):
        Fingerprint.fit([("a", "b")])
    with pytest.raises(ValueError, match="elapsed"):
        Fingerprint.fit([case(f"c{i}", ["a", "b"], t0=i) for i in range(3)]).predict(
            ["a"], elapsed=-5)


def test_rolling_window_excludes_old_runs():
    day = 86400.0
    old = [case(f"old{i}", ["start", "legacy", "finish"], t0=i * day) for i in range(20)]
    new = [case(f"new{i}", ["start", "modern", "finish"], t0=(60 + i) * day) for i in range(20)]
    fp = Fingerprint.fit(old + new, window_days=30)
    assert fp.n_cases == 20 and fp.n_excluded == 20
    assert fp.predict(["start"]).steps[0].activity == "modern"
    assert "unseen step(s) 'legacy'" in fp.predict(["start", "legacy"]).reason
    everything = Fingerprint.fit(old + new, window_days=None)
    assert everything.n_cases == 40 and everything.predict(["start", "legacy"]).ok
    earlier = Fingerprint.fit(old + new, window_days=30, now=19 * day)   # a point in the past
    assert earlier.n_cases == 20 and earlier.predict(["start"]).steps[0].activity == "legacy"


def test_timing_distribution():
    d = Dist.of(np.arange(1, 101, dtype=float))
    assert d.n == 100 and d.mean == 50.5 and d.p50 == pytest.approx(50.5)
    assert d.expected_remaining(0) == 50.5
    assert d.expected_remaining(90) == pytest.approx(5.5, abs=0.5)
    assert d.expected_remaining(1000) == 0.0
    t = Timing.from_cases([Case("c", "w", [Event("a", 0, 5, resource="r1"), Event("b", 10, 12)])])
    assert t.duration["a"].mean == 5 and t.interval["a"].mean == 10 and t.resources == {"a": {"r1": 1}}
    assert t.expected_remaining(None) == 12 and t.eta("a", "b", 4) == pytest.approx(6)


# ------------------------------------------------------------------ file format
def test_round_trip_predictions_identical(observable_regimes, tmp_path):
    cases, fp = observable_regimes
    path = tmp_path / "fp.npz"
    digest = fp.save(path)
    loaded = Fingerprint.load(path)
    assert loaded.content_hash == digest and loaded.predictor == fp.predictor
    for c in cases[-20:]:
        for t in range(len(c.activities) + 1):
            a = fp.predict(c.activities[:t], c.attrs, elapsed=3.0)
            b = loaded.predict(c.activities[:t], c.attrs, elapsed=3.0)
            assert a == b
    s1, s2 = fp.summary(), loaded.summary()
    assert s1 == s2 and json.loads(json.dumps(s1)) == s1
    assert Fingerprint.fit(cases, window_days=None, seed=0, previous=loaded) is loaded
    assert loaded.save(tmp_path / "again.npz") == digest          # deterministic content
    with zipfile.ZipFile(path) as z:                                # numeric arrays only
        assert all(z.read(n)[:6] == b"\x93NUMPY" for n in z.namelist())
    np.load(path, allow_pickle=False)


def test_round_trip_degenerate_fingerprints(tmp_path):
    for fp in (Fingerprint.fit([]), Fingerprint.fit([case("c", ["a"])])):
        fp.save(tmp_path / "x.npz")
        back = Fingerprint.load(tmp_path / "x.npz")
        assert back.predict(["a"]) == fp.predict(["a"]) and not back.predict(["a"]).ok


def _rewrite(src: Path, dst: Path, change) -> None:
    with np.load(src, allow_pickle=False) as npz:
        arrays = {n: npz[n] for n in npz.files}
    change(arrays)
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


def test_corrupt_truncated_tampered_foreign_files(tmp_path):
    fp = Fingerprint.fit([case(f"c{i}", ["a", "b", "c"][: 2 + i % 2], t0=i * 60)
                          for i in range(30)], window_days=None)
    good = tmp_path / "good.npz"
    fp.save(good)
    data = good.read_bytes()

    def expect(path, words):
        with pytest.raises(FingerprintFormatError) as err:
            Fingerprint.load(path)
        assert str(path) in str(err.value) and words in str(err.value)

    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    expect(tmp_path / "trunc.npz", "truncated")
    (tmp_path / "noise.npz").write_bytes(bytes(range(256)) * 10)
    expect(tmp_path / "noise.npz", "not a fingerprint file")
    (tmp_path / "text.json").write_text(json.dumps({"schema": "x"}))
    expect(tmp_path / "text.json", "not a fingerprint file")
    expect(tmp_path / "missing.npz", "no such file")

    def tamper(arrays):
        key = next(k for k in arrays if k.endswith("_counts"))
        arrays[key] = arrays[key] + 1.0
    _rewrite(good, tmp_path / "tampered.npz", tamper)
    expect(tmp_path / "tampered.npz", "content hash mismatch")

    def foreign(arrays):
        meta = json.loads(arrays["__meta__"].tobytes())
        meta["schema"] = "someone-else/model"
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    _rewrite(good, tmp_path / "foreign.npz", foreign)
    expect(tmp_path / "foreign.npz", "foreign file: schema 'someone-else/model'")

    def future(arrays):
        meta = json.loads(arrays["__meta__"].tobytes())
        meta["version"] = 99
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    _rewrite(good, tmp_path / "future.npz", future)
    expect(tmp_path / "future.npz", "unsupported schema version 99")

    other = io.BytesIO()
    np.savez(other, weights=np.zeros(3))
    (tmp_path / "other.npz").write_bytes(other.getvalue())
    expect(tmp_path / "other.npz", "no __meta__")
    pickled = io.BytesIO()
    np.savez(pickled, __meta__=np.array([{"schema": "shadow-dagster/fingerprint"}], dtype=object))
    (tmp_path / "pickled.npz").write_bytes(pickled.getvalue())
    expect(tmp_path / "pickled.npz", "corrupt or not a fingerprint file")   # never unpickled
    Fingerprint.load(good)                                  # the original is still fine


def test_early_eta_is_how_soon_the_step_may_come():
    import numpy as np

    from shadow_dagster.fingerprint.timing import Dist

    d = Dist.of(np.arange(10.0, 51.0))            # a step took 10..50 s in past instances
    assert d.expected_remaining(0) == pytest.approx(30.0)
    assert d.remaining_quantile(0, 0.1) == pytest.approx(14.0)    # 10 % were done within 14 s
    assert 1.0 < d.remaining_quantile(30, 0.1) < 3.5            # 30 s in: 31..50 remain
    assert d.remaining_quantile(30, 0.1) < d.expected_remaining(30)
    assert d.remaining_quantile(60, 0.1) == 0.0                   # overran every past instance
    with pytest.raises(ValueError, match="q must lie"):
        d.remaining_quantile(0, 1.5)
