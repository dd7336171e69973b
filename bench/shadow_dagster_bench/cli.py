"""`shadow-dagster bench ...`: the benchmarks, a command group the repository's dev install adds to
the product CLI (entry point group `shadow_dagster.cli`)."""

from __future__ import annotations

import click

from shadow_dagster.cli.common import echo_json, user_errors
from shadow_dagster_bench.cli_reliability import reliability


@click.group()
def bench() -> None:
    """Benchmarks that print ratios measured side by side in one run."""


@bench.command("ingest")
@click.option("--events", default=200_000, show_default=True, help="synthetic backlog size")
@click.option("--real-events", default=20_000, show_default=True, help="events from real runs")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
@user_errors
def bench_ingest(events, real_events, as_json) -> None:
    """Sensor path vs raw bulk insert on SQLite and PostgreSQL, and a real ingestion tick."""
    from shadow_dagster_bench.ingest import run

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
    from shadow_dagster_bench.speculation import run

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
    from shadow_dagster_bench.warehouse import run

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
    from shadow_dagster_bench.overhead import run

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
    from shadow_dagster_bench.speculation import tick_curve

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
    from shadow_dagster_bench.load import parse_launch_cap, run

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
    from shadow_dagster_bench.fingerprint import run

    run(json_out=as_json)


@bench.command("prefetch")
@click.option("--mb", default=150.0, show_default=True, type=click.FloatRange(0.01, 4000), help="size of the pickled input")
@click.option("--reps", default=2, show_default=True, type=click.IntRange(1, 20), help="rounds per store and mode")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
@user_errors
def bench_prefetch(mb, reps, as_json) -> None:
    """Pre-fetch (local and remote-modelled store) and warm-up, apart from pre-execution."""
    from shadow_dagster_bench.prefetch import run

    run(as_json, mb=mb, reps=reps, echo=click.echo)


bench.add_command(reliability)
