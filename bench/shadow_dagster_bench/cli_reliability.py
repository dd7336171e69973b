"""`reliability`: the exactly-once, stale-reuse, isolation and spoofing trials as one command
(`shadow-dagster bench reliability`)."""

from __future__ import annotations

import json

import click


@click.command("reliability")
@click.option("--trials", default=100, show_default=True, type=click.IntRange(min=1),
              help="kill-and-resume trials per backend; stale-reuse trials are max(1000, 10N) on the key "
                   "function and max(7, N/2) in real runs; isolation/spoofing scenarios repeat max(1, N/50) times")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of every random choice")
@click.option("--pg-url", default=None, help="PostgreSQL URL (default: $SHADOW_DAGSTER_TEST_PG_URL or local 'test')")
@click.option("--no-postgres", is_flag=True, help="SQLite only")
@click.option("--no-pg-restart", is_flag=True, help="skip restarting PostgreSQL mid-tick (it cuts every session)")
@click.option("--details", is_flag=True, help="with --json: include every section's figures in the JSON")
@click.option("--json", "as_json", is_flag=True, help="last line: one JSON object")
def reliability(trials, seed, pg_url, no_postgres, no_pg_restart, details, as_json) -> None:
    """Kill ingestion at random points, change inputs between shadow and live runs, attack isolation
    and provenance; print duplicates, losses, stale reuses, live writes, critical steps run in shadow
    runs and spoofed reuses (all should be 0)."""
    from shadow_dagster_bench.reliability.suite import run_all

    result = run_all(trials, seed=seed, pg_url=pg_url, postgres=not no_postgres, pg_restart=not no_pg_restart,
                     echo=click.echo)
    sections = result.pop("sections")
    for name, section in sections.items():
        if isinstance(section, dict):
            brief = {k: v for k, v in section.items() if not isinstance(v, (dict, list))}
            click.echo(f"{name}: {json.dumps(brief, sort_keys=True, default=str)}")
        else:
            click.echo(f"{name}: {section}")
    if as_json:
        click.echo(json.dumps({**result, **({"sections": sections} if details else {})}, sort_keys=True, default=str))
    else:
        keys = ("trials", "duplicates", "losses", "stale_reuses", "correct_reuses", "live_writes",
                "critical_in_shadow", "spoofed_reuses", "seconds")
        click.echo("  ".join(f"{k}={result[k]}" for k in keys))
