"""Frequent execution sequences (n-grams with support) and run variants."""

from __future__ import annotations

import pandas as pd
import pytest

from shadow_dagster.cases import Case, Event
from shadow_dagster.graph.patterns import (
    execution_patterns, frequent_sequences, markdown_table, run_variants, trace,
)


def case(cid, steps, workflow="w", skipped=()):
    events = [Event(s, float(i)) for i, s in enumerate(steps)]
    events += [Event(s, 0.5, 0.5, "skipped") for s in skipped]
    return Case(cid, workflow, events[::-1])   # input order must not matter


CASES = [case("1", "abcd", skipped="x"), case("2", "abcd"), case("3", "abd"), case("4", "aab"),
         case("5", "xy", workflow="v")]


def test_trace_orders_by_start_and_drops_skipped():
    assert trace(CASES[0]) == ("a", "b", "c", "d")
    tie = Case("t", "w", [Event("p", 1.0), Event("q", 1.0)])
    assert trace(tie) == ("p", "q")


def test_bigram_support_is_share_of_cases():
    rows = frequent_sequences(CASES, min_n=2, max_n=2, min_support=0.5)
    assert [(r["workflow"], r["sequence"], r["cases"], r["support"], r["occurrences"]) for r in rows] == [
        ("v", "x → y", 1, 1.0, 1),
        ("w", "a → b", 4, 1.0, 4),
        ("w", "b → c", 2, 0.5, 2),
        ("w", "c → d", 2, 0.5, 2),
    ]


def test_longer_grams_and_min_support():
    rows = frequent_sequences(CASES, min_n=2, max_n=4, min_support=0.5, with_steps=True)
    w = [(r["sequence"], r["n"], r["support"]) for r in rows if r["workflow"] == "w"]
    assert w == [("a → b", 2, 1.0), ("a → b → c → d", 4, 0.5), ("a → b → c", 3, 0.5),
                 ("b → c → d", 3, 0.5), ("b → c", 2, 0.5), ("c → d", 2, 0.5)]
    assert rows[1]["steps"] == ["a", "b"]
    low = frequent_sequences(CASES, min_n=2, max_n=2, min_support=0.25)
    assert {r["sequence"]: r["occurrences"] for r in low if r["workflow"] == "w"} == {
        "a → b": 4, "b → c": 2, "c → d": 2, "b → d": 1, "a → a": 1}


def test_variants_with_count_and_share():
    rows = run_variants(CASES)
    assert rows == [
        {"workflow": "v", "variant": "x → y", "length": 2, "count": 1, "share": 1.0, "first_case": "5"},
        {"workflow": "w", "variant": "a → b → c → d", "length": 4, "count": 2, "share": 0.5,
         "first_case": "1"},
        {"workflow": "w", "variant": "a → a → b", "length": 3, "count": 1, "share": 0.25,
         "first_case": "4"},
        {"workflow": "w", "variant": "a → b → d", "length": 3, "count": 1, "share": 0.25,
         "first_case": "3"},
    ]
    frame = pd.DataFrame(rows)
    assert frame.groupby("workflow")["share"].sum().to_dict() == {"v": 1.0, "w": 1.0}


def test_execution_patterns_and_markdown():
    both = execution_patterns(CASES, min_support=0.75)
    assert [r["sequence"] for r in both["sequences"]] == ["x → y", "a → b"]
    assert len(both["variants"]) == 4
    md = markdown_table(both["variants"], ["variant", "count", "share"], max_rows=2)
    assert md.splitlines() == ["| variant | count | share |", "|---|---|---|",
                               "| x → y | 1 | 1.000 |", "| a → b → c → d | 2 | 0.500 |",
                               "| … 2 more | | |"]
    assert markdown_table([]) == "_no rows_\n"


@pytest.mark.parametrize("call, message", [
    (lambda: frequent_sequences(CASES, min_n=3, max_n=2), "need integers 1 <= min_n <= max_n"),
    (lambda: frequent_sequences(CASES, min_support=1.5), r"min_support must be a share in \[0, 1\]"),
    (lambda: run_variants([("a", "b")]), "cases must be a list of Case, found tuple"),
    (lambda: run_variants("abc"), "found str"),
    (lambda: markdown_table([{"a": 1}], ["b"]), r"columns \['b'\] are not in the rows"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
