"""`shadow-dagster simulate`: seed history with real runs of the example, a command the demo's
install adds to the product CLI (entry point group `shadow_dagster.cli`)."""

from __future__ import annotations

import click

from shadow_dagster.cli.common import dagster_instance, echo_json, user_errors


@click.command()
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 365))
@click.option("--runs-per-day", default=1, show_default=True, type=click.IntRange(1, 50))
@click.option("--full", is_flag=True, help="compute at full scale instead of the fast mode")
@click.option("--chain-delay", default=0.0, show_default=True, type=click.FloatRange(0, 600),
              help="seconds to wait before each chained job, as a deployed chain sensor does")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
@user_errors
def simulate(days, runs_per_day, full, chain_delay, as_json) -> None:
    """Seed history: execute real runs of the example pipeline against $DAGSTER_HOME."""
    from demo_project.simulate import simulate as run_simulation

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
