"""Read a CSV event log (case_id, activity, timestamp[, resource]) into ordered Cases.

Follows /work/shared/data/README.md: each case's events are ordered by timestamp with ties keeping
file order, and cases are ordered by their first event (ties keep file order). Timestamps are ISO
8601 (other spellings pandas can infer are accepted) and may mix UTC offsets; they are converted to
UTC epoch seconds; a timestamp without an offset is taken as UTC. A row is one completed
activity: the timestamp becomes the event's start, its end stays unknown (None). Extra columns
are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from ..cases import Case, Event

REQUIRED = ("case_id", "activity", "timestamp")


def read_event_log(path: str | os.PathLike, *, workflow: str | None = None) -> list[Case]:
    """Parse the CSV at `path` into Cases of workflow `workflow` (default: the file's stem).

    Raises FileNotFoundError for a missing file and ValueError naming the column or row for an
    empty file, a missing column, an empty case_id/activity or an unparsable timestamp.
    """
    import pandas as pd   # imported here: loading a fingerprint and predicting need no pandas
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such event log file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty file (expected a header with columns "
                         f"{', '.join(REQUIRED)})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV file: {exc}") from None
    return cases_from_frame(df, workflow=workflow or path.stem, source=str(path))


def cases_from_frame(df: pd.DataFrame, *, workflow: str, source: str = "event log") -> list[Case]:
    """Build ordered Cases from a frame with columns case_id, activity, timestamp[, resource]."""
    import pandas as pd   # imported here: loading a fingerprint and predicting need no pandas
    df = df.fillna("")
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {', '.join(map(repr, missing))}; "
                         f"found {', '.join(map(repr, df.columns))}")
    if df.empty:
        raise ValueError(f"{source}: no events (the file has a header but no rows)")
    for col in ("case_id", "activity"):
        values = df[col].astype(str).str.strip()
        blank = np.flatnonzero((values == "").to_numpy())
        if len(blank):
            raise ValueError(f"{source}: row {blank[0] + 1} (line {blank[0] + 2}): "
                             f"empty {col!r}")
        df[col] = values
    raw = df["timestamp"].astype(str).str.strip()
    ts = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    retry = ts.isna().to_numpy()
    if retry.any():                       # other spellings pandas can infer row by row
        ts[retry] = pd.to_datetime(raw[retry], utc=True, errors="coerce", format="mixed")
    bad = np.flatnonzero(ts.isna().to_numpy())
    if len(bad):
        i = bad[0]
        raise ValueError(f"{source}: row {i + 1} (line {i + 2}): unparsable timestamp "
                         f"{raw.iloc[i]!r} in column 'timestamp' ({len(bad)} bad row(s))")
    seconds = (ts - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    frame = pd.DataFrame({
        "case_id": df["case_id"].to_numpy(),
        "activity": df["activity"].to_numpy(),
        "t": seconds.to_numpy(dtype=np.float64),
        "resource": ([v or None for v in df["resource"].astype(str).str.strip()]
                     if "resource" in df.columns else None),
        "row": np.arange(len(df)),
    })
    # Events by time within a case (ties: file order); cases by first event (ties: file order).
    frame = frame.sort_values(["t", "row"], kind="stable")
    first = frame.groupby("case_id", sort=False)["t"].transform("min")
    first_row = frame.groupby("case_id", sort=False)["row"].transform("min")
    frame = frame.assign(first=first, first_row=first_row)
    frame = frame.sort_values(["first", "first_row", "t", "row"], kind="stable")
    cases: list[Case] = []
    current: Case | None = None
    for cid, act, t, res in zip(frame["case_id"], frame["activity"], frame["t"],
                                frame["resource"] if "resource" in df.columns
                                else [None] * len(frame)):
        if current is None or current.case_id != cid:
            current = Case(case_id=str(cid), workflow=workflow)
            cases.append(current)
        current.events.append(Event(activity=str(act), start=float(t), end=None,
                                    resource=res if isinstance(res, str) and res else None))
    return cases
