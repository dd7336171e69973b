"""The `shadow-dagster` command line: the whole loop for people who live in a terminal."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import click

from shadow_dagster.cli.common import dagster_instance, echo_json, echo_rows, no_store_message, open_store, user_errors

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(value: str | None, *, now: float | None = None) -> int | None:
    """'2h', '30m', '7d', '1w', epoch seconds or ISO 8601 -> epoch milliseconds."""
    if value is None:
        return None
    text = value.strip()
    now = time.time() if now is None else now
    m = _RELATIVE.match(text)
    if m:
        return int((now - float(m.group(1)) * _UNIT_S[m.group(2)]) * 1000)
    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"cannot read time {value!r}: use a duration back from now (30m, 2h, 7d), epoch seconds "
            "or ISO 8601 (2026-11-25T08:00:00+00:00)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


store_option = click.option(
    "--store-url", envvar="SHADOW_DAGSTER_STORE_URL", default=None,
    help="signal store URL (default: SQLite in $DAGSTER_HOME)",
)


def code_location_options(fn):
    """`-m`/`-f`/`-d` as `dagster dev` takes them; without them, the code location pyproject.toml
    declares in the working directory. It tells jobs' partitions definitions apart."""
    fn = click.option("-d", "--working-directory", default=None,
                      help="folder to import the code location from (default: here)")(fn)
    fn = click.option("-f", "--python-file", default=None, help="code location: a python file")(fn)
    return click.option("-m", "--module-name", default=None,
                        help="code location: a module (default: pyproject.toml's, as `dagster dev`)")(fn)


def family_for(module_name, python_file, working_directory):
    """(job -> partitions family, the code location's description or None)."""
    from shadow_dagster.dagster.code_location import load_repository, resolve_target
    from shadow_dagster.dagster.instances import family_resolver, no_family

    target = resolve_target(module_name, python_file, working_directory)
    if target is None:
        return no_family, None
    return family_resolver(load_repository(target)), target.describe()


@click.command()
@store_option
@click.option("--resolution-ms", default=1000, show_default=True, help="TSA resolution (1 to 60000 ms)")
@click.option("--page-size", default=2000, show_default=True)
@click.option("--max-seconds", default=300.0, show_default=True, help="stop after this long")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@code_location_options
@user_errors
def ingest(store_url, resolution_ms, page_size, max_seconds, as_json, module_name, python_file,
           working_directory) -> None:
    """One ingestion pass over the event log of the instance in $DAGSTER_HOME.

    Runs of one partition key form workflow instances per partitions definition, which the code
    location tells (as the sensor, which runs in it, knows); without one they share the key only."""
    from shadow_dagster.dagster.ingest import check_event_storage
    from shadow_dagster.dagster.ingest import ingest as run_ingest

    instance = dagster_instance()
    check_event_storage(instance)      # before the store is created: an unreadable log ingests nothing
    family_of, location = family_for(module_name, python_file, working_directory)
    store = open_store(store_url)
    report = run_ingest(
        instance, store, resolution_ms=resolution_ms, page_size=page_size, max_seconds=max_seconds,
        family_of=family_of,
    )
    if as_json:
        echo_json({**report.__dict__, "skipped": [list(s) for s in report.skipped], "code_location": location})
    else:
        click.echo(report.summary())
        click.echo(f"partitions definitions from code location {location}" if location else
                   "no code location (-m/-f, or pyproject.toml here): runs of one partition key are "
                   "grouped without telling partitions definitions apart")
        for storage_id, reason in report.skipped:
            click.echo(f"  skipped storage_id={storage_id}: {reason}", err=True)


def _fmt_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@click.command()
@store_option
@click.option("--run", "run_id", default=None, help="only this run")
@click.option("--job", "job_name", default=None, help="only this job")
@click.option("--step", "step_key", default=None, help="only this step")
@click.option("--workflow", "workflow_key", default=None, help="only this workflow key")
@click.option("--since", default=None, help="from this time: 30m, 2h, 7d, epoch seconds or ISO 8601")
@click.option("--until", default=None, help="up to this time (same forms as --since)")
@click.option("--json", "as_json", is_flag=True, help="print JSON (one object per line)")
@user_errors
def signals(store_url, run_id, job_name, step_key, workflow_key, since, until, as_json) -> None:
    """Print signals with their timestamp arrays (TSA) and intensity."""
    since_ms, until_ms = parse_time(since), parse_time(until)
    store = open_store(store_url, read=True)
    if store is None:                  # nothing ingested yet; a read creates nothing
        if not as_json:
            click.echo(f"no signals: {no_store_message(store_url)}")
        return
    found = store.signals(
        run_id=run_id, job_name=job_name, step_key=step_key, workflow_key=workflow_key,
        since_ms=since_ms, until_ms=until_ms,
    )
    store.dispose()

    def line(sig) -> str:
        tsa = ", ".join(f"{_fmt_ms(t)} {k}" for t, k in zip(sig.tsa, sig.transitions))
        dur = "" if sig.duration_ms is None else f"{sig.duration_ms / 1000:.3f}"
        inten = "" if sig.intensity is None else f"{sig.intensity:.2f}"
        return (f"{sig.run_id[:8]:<10} {(sig.job_name or '')[:20]:<20} {(sig.step_key or '(run)')[:24]:<24} "
                f"{sig.status:<9} {inten:>5} {dur:>8}  {tsa}")

    echo_rows(found, as_json=as_json, to_json=lambda sig: sig.to_dict(),
              empty="no signals match (run `shadow-dagster ingest` first?)",
              header=f"{'run':<10} {'job':<20} {'step':<24} {'status':<9} {'int':>5} {'dur_s':>8}  TSA", line=line)


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
@code_location_options
@user_errors
def predict(run_id, as_json, module_name, python_file, working_directory) -> None:
    """Next steps (probability, ETA) and remaining duration of RUN_ID's workflow instance."""
    from shadow_dagster.dagster.live import predict_run

    instance = dagster_instance(read=True)
    family_of, _ = family_for(module_name, python_file, working_directory)
    result = predict_run(instance, run_id, family_of=family_of)
    if as_json:
        echo_json(result.to_dict())
        return
    pred = result.prediction
    click.echo(f"run {run_id} - workflow {result.workflow!r}, instance {result.workflow_key!r}")
    click.echo(f"steps so far: {' -> '.join(result.prefix) or '(none)'}")
    if not pred.ok:
        click.echo(f"no prediction: {pred.reason}")
        return
    click.echo(f"predictor {pred.predictor}; end of instance next: p={pred.end_probability:.3f}")
    since = (f"{result.elapsed_seconds:.1f} s since {result.prefix[-1]} started"
             if result.prefix and result.elapsed_seconds is not None else None)
    if since:
        click.echo(f"elapsed: {since}")
    click.echo(f"{'next step':<40} {'p':>6} {'ETA s':>8}")
    overdue = set(result.overdue)
    for step in pred.steps:
        if step.activity in overdue:
            eta = "overdue"
        elif not result.prefix:
            eta = "at start"     # the first step starts with the run
        else:
            eta = "" if step.eta_seconds is None else f"{step.eta_seconds:.1f}"
        click.echo(f"{step.activity:<40} {step.probability:>6.3f} {eta:>8}")
    if overdue:
        click.echo(f"overdue: {since}, longer than any past instance took to reach the step(s) "
                   "marked; no ETA until one of them starts")
    if result.remaining_unknown:
        click.echo(f"expected remaining duration: unknown, the instance is slower than every one in its "
                   f"history ({since})")
    elif pred.expected_remaining_seconds is not None:
        click.echo(f"expected remaining duration: {pred.expected_remaining_seconds:.1f} s")
