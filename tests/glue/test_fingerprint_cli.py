"""`fingerprint eval` / `fingerprint show` commands (click), on receipt.csv and on bad input.

receipt.csv: J.C.A.M. Buijs, Receipt phase of an environmental permit application process
(WABO), CoSeLoG project, 4TU.ResearchData.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from shadow_dagster.cases import Case, Event
from shadow_dagster.cli.fingerprint import fingerprint
from shadow_dagster.fingerprint import Fingerprint

RECEIPT = "/work/shared/data/receipt.csv"


def test_eval_json_last_line():
    result = CliRunner().invoke(fingerprint, ["eval", "--log", RECEIPT, "--json", "--k", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["kgram"]["k"] == 2 and out["cases"] == 478 and out["prefixes"] == 2748
    best = max(out[m]["top1"] for m in ("markov1", "kgram", "hmm"))
    assert out["fingerprint"]["top1"] >= best - 0.003


def test_eval_table_cites_the_log(tmp_path):
    result = CliRunner().invoke(fingerprint, ["eval", "--log", RECEIPT, "--k", "1"])
    assert result.exit_code == 0, result.output
    assert "markov1" in result.output and "top1" in result.output
    assert "J.C.A.M. Buijs" in result.output and "4TU.ResearchData" in result.output


def test_eval_user_errors_have_no_traceback(tmp_path):
    missing = CliRunner().invoke(fingerprint, ["eval", "--log", str(tmp_path / "none.csv")])
    assert missing.exit_code != 0 and "no such event log file" in missing.output
    assert "Traceback" not in missing.output
    bad = tmp_path / "bad.csv"
    bad.write_text("case,activity,when\nx,a,2020\n")
    result = CliRunner().invoke(fingerprint, ["eval", "--log", str(bad), "--json"])
    assert result.exit_code != 0 and "missing column(s) 'case_id', 'timestamp'" in result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit


def test_show_saved_fingerprint(tmp_path):
    cases = [Case(f"c{i}", "etl", [Event("extract", i * 60.0, i * 60.0 + 5),
                                   Event("load" if i % 3 else "repair", i * 60.0 + 6)])
             for i in range(40)]
    path = tmp_path / "etl.npz"
    Fingerprint.fit(cases, window_days=None).save(path)
    text = CliRunner().invoke(fingerprint, ["show", "--path", str(path)])
    assert text.exit_code == 0, text.output
    assert "workflow 'etl': 40 instances" in text.output and "held-out" in text.output
    js = CliRunner().invoke(fingerprint, ["show", "--path", str(path), "--json"])
    summary = json.loads(js.output.strip().splitlines()[-1])
    assert summary["workflow"] == "etl" and summary["heldout"]["fingerprint"]["top1"] is not None
    (tmp_path / "junk.npz").write_bytes(b"junk")
    junk = CliRunner().invoke(fingerprint, ["show", "--path", str(tmp_path / "junk.npz")])
    assert junk.exit_code != 0 and "junk.npz" in junk.output and "Traceback" not in junk.output
