"""Execution patterns: frequent step sequences (n-grams with support) and run variants.

A case's *trace* is the ordered tuple of the steps it executed (events sorted by start, input order
breaking ties, skipped steps left out). An n-gram is a contiguous run of n steps of a trace; its
support is the share of the workflow's cases whose trace contains it at least once. A *variant* is
a whole trace; its share is the fraction of the workflow's cases that executed exactly it.

Rows are flat dicts of str/int/float (ready for pandas.DataFrame or Dagster TableRecord); the
sequence is rendered with ``SEP`` between steps and also given as a JSON-ready ``steps`` list only
where ``with_steps=True``.
"""

from __future__ import annotations

from collections import Counter

from shadow_dagster.cases import Case
from shadow_dagster.graph.reconstruct import executed, group_by_workflow

SEP = " → "


def trace(case: Case) -> tuple[str, ...]:
    """The ordered steps ``case`` executed (skipped steps excluded)."""
    ordered = sorted(enumerate(case.events), key=lambda ie: (ie[1].start, ie[0]))
    return tuple(e.activity for _, e in ordered if executed(e))


def frequent_sequences(cases: list[Case], min_n: int = 2, max_n: int = 4,
                       min_support: float = 0.1, with_steps: bool = False) -> list[dict]:
    """n-grams (min_n <= n <= max_n) whose support is at least ``min_support``, per workflow.

    Row: workflow, sequence, n, cases (containing it), support, occurrences (total, overlapping).
    Sorted by workflow, support descending, n descending, sequence.
    """
    _check_cases(cases)
    if not (isinstance(min_n, int) and isinstance(max_n, int) and 1 <= min_n <= max_n):
        raise ValueError(f"need integers 1 <= min_n <= max_n, got min_n={min_n!r} max_n={max_n!r}")
    if not isinstance(min_support, (int, float)) or not 0.0 <= min_support <= 1.0:
        raise ValueError(f"min_support must be a share in [0, 1], got {min_support!r}")
    rows = []
    for workflow, group in _by_workflow(cases).items():
        containing: Counter = Counter()
        occurrences: Counter = Counter()
        for case in group:
            steps = trace(case)
            grams = [steps[i:i + n] for n in range(min_n, max_n + 1)
                     for i in range(len(steps) - n + 1)]
            occurrences.update(grams)
            containing.update(set(grams))
        for gram, count in containing.items():
            support = count / len(group)
            if support >= min_support:
                row = {"workflow": workflow, "sequence": SEP.join(gram), "n": len(gram),
                       "cases": count, "support": support, "occurrences": occurrences[gram]}
                if with_steps:
                    row["steps"] = list(gram)
                rows.append(row)
    rows.sort(key=lambda r: (r["workflow"], -r["support"], -r["n"], r["sequence"]))
    return rows


def run_variants(cases: list[Case], with_steps: bool = False) -> list[dict]:
    """Distinct traces per workflow. Row: workflow, variant, length, count, share, first_case.

    Sorted by workflow, count descending, variant; ``first_case`` is the first case (input order)
    that executed the variant.
    """
    _check_cases(cases)
    rows = []
    for workflow, group in _by_workflow(cases).items():
        counts: Counter = Counter()
        first: dict[tuple, str] = {}
        for case in group:
            steps = trace(case)
            counts[steps] += 1
            first.setdefault(steps, case.case_id)
        for steps, count in counts.items():
            row = {"workflow": workflow, "variant": SEP.join(steps), "length": len(steps),
                   "count": count, "share": count / len(group), "first_case": first[steps]}
            if with_steps:
                row["steps"] = list(steps)
            rows.append(row)
    rows.sort(key=lambda r: (r["workflow"], -r["count"], r["variant"]))
    return rows


def execution_patterns(cases: list[Case], min_n: int = 2, max_n: int = 4,
                       min_support: float = 0.1) -> dict[str, list[dict]]:
    """Both tables: ``{"sequences": frequent_sequences(...), "variants": run_variants(...)}``."""
    return {"sequences": frequent_sequences(cases, min_n, max_n, min_support),
            "variants": run_variants(cases)}


def markdown_table(rows: list[dict], columns: list[str] | None = None, max_rows: int = 50) -> str:
    """A GFM table of ``rows`` (floats with 3 decimals); ``columns`` defaults to the first row's keys."""
    if not rows:
        return "_no rows_\n"
    columns = columns or list(rows[0])
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise ValueError(f"columns {missing} are not in the rows (have {list(rows[0])})")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows[:max_rows]:
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    if len(rows) > max_rows:
        lines.append(f"| … {len(rows) - max_rows} more |" + " |" * (len(columns) - 1))
    return "\n".join(lines) + "\n"


def _by_workflow(cases: list[Case]) -> dict[str, list[Case]]:
    return dict(sorted(group_by_workflow(cases).items(), key=lambda kv: str(kv[0])))


def _check_cases(cases) -> None:
    if not isinstance(cases, list) or not all(isinstance(c, Case) for c in cases):
        bad = cases if not isinstance(cases, list) else next(c for c in cases if not isinstance(c, Case))
        raise ValueError(f"cases must be a list of Case, found {type(bad).__name__}")
