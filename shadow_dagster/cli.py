"""The `shadow-dagster` command line: the whole loop for people who live in a terminal."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import click

from shadow_dagster import __version__
from shadow_dagster.cli_common import dagster_instance, echo_json, no_store_message, open_store, user_errors

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


@click.group()
@click.version_option(__version__, prog_name="shadow-dagster")
def main() -> None:
    """shadow-dagster: learn how recurring Dagster workflows run and do safe work ahead of time."""


@main.command()
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


@main.command()
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
    if as_json:
        for sig in found:
            echo_json(sig.to_dict())
        return
    if not found:
        click.echo("no signals match (run `shadow-dagster ingest` first?)")
        return
    click.echo(f"{'run':<10} {'job':<20} {'step':<24} {'status':<9} {'int':>5} {'dur_s':>8}  TSA")
    for sig in found:
        tsa = ", ".join(f"{_fmt_ms(t)} {k}" for t, k in zip(sig.tsa, sig.transitions))
        dur = "" if sig.duration_ms is None else f"{sig.duration_ms / 1000:.3f}"
        inten = "" if sig.intensity is None else f"{sig.intensity:.2f}"
        click.echo(
            f"{sig.run_id[:8]:<10} {(sig.job_name or '')[:20]:<20} {(sig.step_key or '(run)')[:24]:<24} "
            f"{sig.status:<9} {inten:>5} {dur:>8}  {tsa}"
        )


@main.command()
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


@main.command()
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 365))
@click.option("--runs-per-day", default=1, show_default=True, type=click.IntRange(1, 50))
@click.option("--full", is_flag=True, help="compute at full scale instead of the fast mode")
@click.option("--chain-delay", default=0.0, show_default=True, type=click.FloatRange(0, 600),
              help="seconds to wait before each chained job, as a deployed chain sensor does")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
@user_errors
def simulate(days, runs_per_day, full, chain_delay, as_json) -> None:
    """Seed history: execute real runs of the example pipeline against $DAGSTER_HOME."""
    from shadow_dagster.example.simulate import simulate as run_simulation

    instance = dagster_instance()
    with click.progressbar(length=days * runs_per_day * 3, label="simulating runs", file=None) as bar:
        done = {"n": 0}

        def progress(n, total, what):
            bar.length = total
            bar.update(n - done["n"])
            done["n"] = n

        run_ids = run_simulation(instance, days, runs_per_day, fast=not full, progress=progress,
                                 chain_delay_s=chain_delay)
    if as_json:
        echo_json({"runs": len(run_ids), "run_ids": run_ids})
    else:
        click.echo(f"executed {len(run_ids)} runs; now `shadow-dagster ingest` and refit the fingerprint")


@main.group()
def bench() -> None:
    """Benchmarks that print ratios measured side by side in one run."""


@bench.command("ingest")
@click.option("--events", default=200_000, show_default=True, help="synthetic backlog size")
@click.option("--real-events", default=20_000, show_default=True, help="events from real runs")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
@user_errors
def bench_ingest(events, real_events, as_json) -> None:
    """Sensor path vs raw bulk insert on SQLite and PostgreSQL, and a real ingestion tick."""
    from shadow_dagster.bench.ingest import run

    result = run(events=events, real_events=real_events, echo=click.echo)
    if as_json:
        echo_json(result)


@bench.command("speculation")
@click.option("--instances", default=6, show_default=True, type=click.IntRange(2, 100))
@click.option("--history", default=12, show_default=True, type=click.IntRange(2, 500))
@click.option("--work-s", default=8.0, show_default=True, type=click.FloatRange(min=0.1),
              help="seconds of work of a branch step (publish: 1.5 x, quality: 1.25 x)")
@click.option("--compute", default="wait", show_default=True, type=click.Choice(["wait", "cpu"]),
              help="what a step's work is: a wait on a modelled external system, or a sha256 loop")
@click.option("--tick-s", default=0.5, show_default=True, type=click.FloatRange(min=0.05),
              help="seconds between speculative-sensor ticks")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
def bench_speculation(instances, history, work_s, compute, tick_s, as_json) -> None:
    """The same workload with speculation off, on and with an oracle; adversarial workload; tick time."""
    from shadow_dagster.bench.speculation import run

    run(as_json, instances=instances, history=history, work_s=work_s, tick_s=tick_s, compute=compute)


@bench.command("warehouse")
@click.option("--months", default=2, show_default=True, type=click.IntRange(1, 2),
              help="months after the January history (each: a monthly run and its four weekly runs)")
@click.option("--trips", default=20_000, show_default=True, type=click.IntRange(100, 10_000_000),
              help="trip records per month")
@click.option("--query-s", default=2.0, show_default=True, type=click.FloatRange(0, 60),
              help="seconds a remote warehouse takes to answer each metric query")
@click.option("--burners", default=2, show_default=True, type=click.IntRange(0, 16),
              help="CPU-burning processes beside the benchmark (a busy host)")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
@user_errors
def bench_warehouse(months, trips, query_s, burners, as_json) -> None:
    """examples/warehouse with speculation off and on: reuse, safety checks and weekly-run wall time."""
    from shadow_dagster.bench.warehouse import run

    run(as_json, months=months, trips_per_month=trips, query_s=query_s, burners=burners, echo=click.echo)


@bench.command("overhead")
@click.option("--samples", default=5, show_default=True, type=click.IntRange(1, 50),
              help="code-location loads per side (fresh interpreters, alternating)")
@click.option("--runs", default=3, show_default=True, type=click.IntRange(1, 20),
              help="runs of the 3-step multiprocess job per side")
@click.option("--iters", default=200_000, show_default=True, type=click.IntRange(1, 100_000_000),
              help="sha256 rounds of each step")
@click.option("--burners", default=0, show_default=True, type=click.IntRange(0, 16),
              help="CPU-burning processes beside the benchmark (a busy host)")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
@user_errors
def bench_overhead(samples, runs, iters, burners, as_json) -> None:
    """What the integration costs: code-location load time and a live run, integrated vs plain."""
    from shadow_dagster.bench.overhead import run

    out = run(samples=samples, runs=runs, iters=iters, burners=burners, echo=click.echo)
    click.echo(f"import_s_added {out['import_s_added']:.3f} s, live_run_ratio {out['live_run_ratio']:.4f}")
    if as_json:
        echo_json(out)


@bench.command("tick-curve")
@click.option("--live", "ns", default="10,100,1000", show_default=True, help="live instance counts, comma-separated")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
@user_errors
def bench_tick_curve(ns, as_json) -> None:
    """The speculative sensor's tick time as live workflow instances grow."""
    from shadow_dagster.bench.speculation import tick_curve

    try:
        counts = tuple(int(n) for n in ns.split(","))
    except ValueError:
        raise click.BadParameter(f"--live takes comma-separated integers, got {ns!r}") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"--live counts must be positive, got {ns!r}")
    tick_curve(counts, json_out=as_json, echo=click.echo)


@bench.command("load")
@click.option("--live", default=100, show_default=True, type=click.IntRange(2, 1000),
              help="live workflow instances in flight at once")
@click.option("--batches", default=3, show_default=True, type=click.IntRange(2, 8),
              help="off/on batches, symmetric: 2 = off on, 3 = off on off, 4 = off on on off")
@click.option("--ack-s", default=None, type=float,
              help="seconds the critical step waits for the external ack [45 at --live 100, scaled down below]")
@click.option("--fetch-s", default=None, type=float,
              help="seconds a non-critical step waits for its fetch [6 at --live 100]")
@click.option("--spread-s", default=None, type=float, help="arrivals spread over this many seconds [30 at --live 100]")
@click.option("--tick-s", default=None, type=float,
              help="sensor interval [its minimum_interval_seconds at --live 100]")
@click.option("--max-load-per-core", default="none", show_default=True,
              help="the policy's load guard for the sensor, e.g. 1.5 ('none': off, the product default)")
@click.option("--launches-per-tick", default="auto", show_default=True,
              help="the policy's cap on shadow launches per tick: a number, 'none' (no cap) or 'auto' "
                   "(the product default: 1 here, where shadow runs start on the live runs' host)")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
@user_errors
def bench_load(live, batches, ack_s, fetch_s, spread_s, tick_s, max_load_per_core, launches_per_tick,
               as_json) -> None:
    """LIVE workflow instances at once, speculation off and on: slowdown, tick time, shadow runs."""
    from shadow_dagster.bench.load import parse_launch_cap, run

    guard = None if max_load_per_core.strip().lower() == "none" else float(max_load_per_core)
    try:
        cap = parse_launch_cap(launches_per_tick)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--launches-per-tick") from None
    run(as_json, live=live, batches=batches, ack_s=ack_s, fetch_s=fetch_s, spread_s=spread_s, tick_s=tick_s,
        max_load_per_core=guard, launches_per_tick=cap, echo=click.echo)


@bench.command("fingerprint")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
def bench_fingerprint(as_json) -> None:
    """Fit time and memory as history grows, prediction latency, accuracy on receipt.csv."""
    from shadow_dagster.fingerprint.bench import run

    run(json_out=as_json)


@bench.command("prefetch")
@click.option("--mb", default=150.0, show_default=True, type=click.FloatRange(0.01, 4000), help="size of the pickled input")
@click.option("--reps", default=2, show_default=True, type=click.IntRange(1, 20), help="rounds per store and mode")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
@user_errors
def bench_prefetch(mb, reps, as_json) -> None:
    """Pre-fetch (local and remote-modelled store) and warm-up, apart from pre-execution."""
    from shadow_dagster.bench.prefetch import run

    run(as_json, mb=mb, reps=reps, echo=click.echo)


def _register() -> None:
    from shadow_dagster.cli_fingerprint import fingerprint
    from shadow_dagster.cli_reliability import reliability
    from shadow_dagster.cli_shadow import shadow

    main.add_command(fingerprint)
    main.add_command(shadow)
    bench.add_command(reliability)


_register()
