"""`shadow-dagster fingerprint ...`: evaluate on a CSV event log, show a saved fingerprint.

The integrator adds `fingerprint` to the main CLI group (and the Dagster-store commands `fit` and
`show JOB`). With --json the last output line is one JSON object.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import click

# the fingerprint core (numpy, and pandas to fit) loads inside the commands, not with the CLI


def _table(rows: list[tuple], headers: tuple) -> str:
    cells = [tuple(str(c) for c in headers)] + [tuple("-" if c is None else str(c) for c in r)
                                                for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@click.group(name="fingerprint")
def fingerprint() -> None:
    """Workflow fingerprints: next-step models of how instances run."""


@fingerprint.command(name="eval")
@click.option("--log", "log_path", required=True, type=click.Path(dir_okay=False),
              help="CSV event log with columns case_id, activity, timestamp[, resource].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
@click.option("--k", default=3, show_default=True, type=click.IntRange(1, 8),
              help="Order of the k-gram baseline (and highest order the fingerprint tries).")
@click.option("--seed", default=0, show_default=True, type=int, help="HMM random seed.")
def eval_cmd(log_path: str, as_json: bool, k: int, seed: int) -> None:
    """Next-activity accuracy of the fingerprint and its baselines on an event log
    (temporal split: first two thirds of cases train, every prefix of the rest is predicted)."""
    from shadow_dagster.fingerprint import CITATION, evaluate_log, read_event_log

    try:
        cases = read_event_log(log_path)
        result = evaluate_log(cases, k=k, seed=seed)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result))
        return
    rows = [("fingerprint", result["predictor"], result["fingerprint"]["top1"],
             result["fingerprint"]["top3"]),
            ("markov1", "first-order Markov", result["markov1"]["top1"], result["markov1"]["top3"]),
            ("kgram", f"order {k} with backoff", result["kgram"]["top1"], result["kgram"]["top3"])]
    hmm = result["hmm"]
    rows.append(("hmm", f"K={hmm['K']}" if hmm else "not fitted", hmm and hmm["top1"],
                 hmm and hmm["top3"]))
    click.echo(f"{log_path}: {len(cases)} cases; {result['cases']} test cases, "
               f"{result['prefixes']} prefixes (end of case included)")
    click.echo(_table(rows, ("model", "what", "top1", "top3")))
    if "receipt" in log_path.lower():
        click.echo(f"Log: {CITATION}")


@fingerprint.command(name="show")
@click.argument("workflow", required=False)
@click.option("--path", "path", default=None, type=click.Path(dir_okay=False),
              help="A fingerprint file written by Fingerprint.save() (instead of WORKFLOW).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def show_cmd(workflow: str | None, path: str | None, as_json: bool) -> None:
    """Summary and held-out accuracy of WORKFLOW's fitted fingerprint, or of --path. WORKFLOW is
    the workflow as the fingerprint views and `predict` name it (its first job), or the name its
    instances' keys start with (`daily_pipeline` for `daily_pipeline:2024-01-05`)."""
    from shadow_dagster.fingerprint import Fingerprint, FingerprintFormatError

    if (workflow is None) == (path is None):
        raise click.UsageError("give either WORKFLOW (a job name) or --path FILE")
    note = None
    try:
        if workflow is not None:
            path, note = _resolve_workflow(workflow)
        elif Path(path).is_file() and not zipfile.is_zipfile(path):
            raise click.ClickException(f"{path} is not a shadow-dagster fingerprint file (those are the "
                                       "*.fingerprint files `shadow-dagster fingerprint fit` writes)")
        fp = Fingerprint.load(path)
    except (FingerprintFormatError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    if note and not as_json:
        click.echo(note)
    summary = fp.summary()
    if as_json:
        click.echo(json.dumps(summary, default=str))
        return
    click.echo(f"workflow {summary['workflow']!r}: {summary['instances']} instances, "
               f"{summary['vocabulary']} steps, predictor {summary['predictor']}")
    if summary["reason"]:
        click.echo(f"no prediction: {summary['reason']}")
    held = summary["heldout"]
    rows = [(name, held[name].get("top1"), held[name].get("top3"))
            for name in ("fingerprint", "markov1", "kgram", "kgram_conditioned", "hmm")
            if isinstance(held.get(name), dict)]
    if rows:
        click.echo(f"held-out (newest {held['cases']} instances, {held['prefixes']} prefixes):")
        click.echo(_table(rows, ("model", "top1", "top3")))
    elif held.get("note"):
        click.echo(held["note"])
    click.echo(f"content hash {summary['content_hash']}")


def _check_fingerprint_home() -> None:
    """Fingerprints live under $DAGSTER_HOME unless their own folder is set: it must exist."""
    from shadow_dagster.cli.common import dagster_home
    from shadow_dagster.dagster.fingerprints import ENV_DIR

    if not os.environ.get(ENV_DIR):
        dagster_home()


def _resolve_workflow(name: str) -> tuple[str, str | None]:
    """(fingerprint file, note) for the name a user gives, or one line saying which workflows exist."""
    from shadow_dagster.dagster.fingerprints import fingerprint_dir, fingerprint_path, load_fingerprints

    _check_fingerprint_home()
    path = fingerprint_path(name)
    if path.exists():
        return str(path), None
    fitted = load_fingerprints()            # workflow -> Fingerprint, read only
    known = ", ".join(sorted(fitted)) or "none yet"
    by_key = sorted(_workflows_of_instances(name) & set(fitted))
    if len(by_key) == 1:
        return str(fingerprint_path(by_key[0])), (f"instances {name}:... run as workflow {by_key[0]!r} "
                                                  "(a workflow is named after its first job)")
    later = sorted(w for w, fp in fitted.items() if w != name and fp.vocab is not None
                   and any(a.startswith(f"{name}/") for a in fp.vocab.activities))
    if later:
        raise click.ClickException(
            f"no fingerprint for workflow {name!r}: {name} runs as a later job of workflow "
            f"{later[0]!r} (a workflow is named after its first job); workflows with a fingerprint: {known}")
    raise click.ClickException(
        f"no fingerprint for workflow {name!r} in {fingerprint_dir()}; workflows with a fingerprint: {known} "
        "(run `shadow-dagster fingerprint fit` or materialize the workflow_fingerprint asset to add more)")


def _workflows_of_instances(prefix: str) -> set[str]:
    """Workflows (first job) of the ingested instances whose key is `prefix` or starts with `prefix:`."""
    import sqlalchemy as sa

    from shadow_dagster.cli.common import open_store
    from shadow_dagster.store import schema

    try:
        store = open_store(None, read=True)
    except (click.ClickException, ValueError, RuntimeError):
        return set()
    if store is None:
        return set()
    t = schema.signals
    q = (sa.select(t.c.workflow_key, t.c.job_name, sa.func.min(t.c.ts_ms))
         .where(t.c.kind == "run", sa.or_(t.c.workflow_key == prefix, t.c.workflow_key.like(f"{prefix}:%")))
         .group_by(t.c.workflow_key, t.c.job_name))
    first: dict[str, tuple[int, str]] = {}
    with store.engine.connect() as conn:
        for key, job, ts in conn.execute(q):
            if job and (key not in first or ts < first[key][0]):
                first[key] = (ts, job)
    store.dispose()
    return {job for _, job in first.values()}


@fingerprint.command(name="fit")
@click.option("--store-url", envvar="SHADOW_DAGSTER_STORE_URL", default=None,
              help="signal store URL (default: SQLite in $DAGSTER_HOME)")
@click.option("--window-days", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
def fit_cmd(store_url: str | None, window_days: float, as_json: bool) -> None:
    """Fit (or keep, when history is unchanged) every workflow's fingerprint from the signal store."""
    from shadow_dagster.cli.common import no_store_message, open_store
    from shadow_dagster.dagster.history_assets import fit_or_reuse, window_cases

    _check_fingerprint_home()
    try:
        store = open_store(store_url, read=True)     # fitting only reads signals: create no store
        if store is None:
            if as_json:
                click.echo(json.dumps({}))
            else:
                click.echo(f"no workflow history: {no_store_message(store_url)}")
            return
        grouped = window_cases(store, window_days, executed_only=True)
        results = {}
        with click.progressbar(sorted(grouped.items()), label="fitting", file=None,
                               item_show_func=lambda kv: kv[0] if kv else "") as bar:
            for workflow, cases in bar:
                fp, refit = fit_or_reuse(workflow, cases, window_days)
                s = fp.summary()
                results[workflow] = {"instances": s["instances"], "predictor": s["predictor"],
                                     "refit": refit, "reason": s["reason"],
                                     "top1": (s["heldout"].get("fingerprint") or {}).get("top1")}
    except (ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(results))
        return
    if not results:
        click.echo("no workflow history in the window: run `shadow-dagster ingest` first")
    for workflow, r in results.items():
        state = "refitted" if r["refit"] else "unchanged"
        click.echo(f"{workflow}: {r['instances']} instances, predictor {r['predictor']}, "
                   f"held-out top-1 {r['top1']}, {state}" + (f" ({r['reason']})" if r["reason"] else ""))
