"""`shadow-dagster shadow list|gc`: inspect and clean up shadow runs."""

from __future__ import annotations

import os
import time

import click

from shadow_dagster.cli.common import dagster_home
from shadow_dagster.cli.common import dagster_instance as _instance
from shadow_dagster.cli.common import open_store as _signal_store
from shadow_dagster.cli.common import echo_rows, user_errors


@click.group("shadow")
def shadow():
    """Shadow runs launched by the speculative sensor."""


@shadow.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--store-url", default=None, help="signal store URL (default: the shadow-dagster store)")
@user_errors
def list_runs(as_json: bool, limit: int, store_url: str | None):
    """Shadow runs with their state and outcome, newest first."""
    from shadow_dagster.store.outcomes import read_outcomes
    from shadow_dagster.dagster.speculation_report import shadow_run_rows

    instance = _instance(read=True)
    store = _signal_store(store_url, read=True)     # None: nothing ingested yet (and nothing created)
    rows = shadow_run_rows(instance, read_outcomes(store) if store else [], limit=limit)
    echo_rows(rows, as_json=as_json, to_json=lambda r: r, empty="no shadow runs",
              header=f"{'run':10} {'status':10} {'outcome':8} {'p':>6}  activity (workflow key)",
              line=lambda r: f"{r['run_id'][:8]:10} {r['status']:10} {r['outcome']:8} {r['probability'] or '':>6}  "
                             f"{r['activity']} ({r['parent']})")


@shadow.command("gc")
@click.option("--ttl", "ttl_s", default=3600.0, show_default=True, type=float,
              help="seconds after which unresolved predictions' outputs are deleted")
@click.option("--shadow-dir", default=None, help="shadow output root (default: DAGSTER_HOME/shadow_dagster/outputs)")
@click.option("--store-url", default=None, help="store URL (default: the shadow-dagster store)")
@user_errors
def gc(ttl_s: float, shadow_dir: str | None, store_url: str | None):
    """Delete outputs of finished shadow runs whose prediction is resolved or older than --ttl."""
    from dagster import RunsFilter

    from shadow_dagster.store.outcomes import RESOLVED, read_outcomes
    from shadow_dagster.store.layout import ShadowStorage
    from shadow_dagster.store.outputs import PROMOTED, delete_shadow_outputs
    from shadow_dagster.tags import PREDICTION_TAG, SHADOW_TAG

    if ttl_s < 0:
        raise click.ClickException(f"--ttl must be >= 0 seconds, got {ttl_s}")
    where = ShadowStorage(signal_store_url=store_url, output_store_url=store_url, shadow_dir=shadow_dir)
    root = where.location("shadow_dir", dagster_home() if not shadow_dir else None)
    if not os.path.isdir(root):
        if shadow_dir:      # the folder the user named is not there: a typo, say so
            raise click.ClickException(f"shadow output directory {root} does not exist")
        click.echo(f"nothing to collect: no shadow outputs under {root} (no shadow run has written any)")
        return
    instance = _instance(read=True)
    store = _signal_store(store_url, read=True)
    outputs = where.output_store()
    resolved = {r.prediction_id for r in read_outcomes(store) if r.stage in RESOLVED} if store else set()
    now, deleted, runs = time.time(), 0, 0
    for rec in instance.get_run_records(filters=RunsFilter(tags={SHADOW_TAG: "true"})):
        run = rec.dagster_run
        if not run.is_finished:
            continue
        old = rec.end_time is not None and now - rec.end_time > ttl_s
        if run.tags.get(PREDICTION_TAG) in resolved or old:
            kept = [o for o in outputs.list(run_id=run.run_id) if o.status == PROMOTED]
            if kept and not old:
                continue   # promoted outputs stay until the TTL (the live copy is authoritative anyway)
            n = delete_shadow_outputs(outputs, run_id=run.run_id)
            deleted += n
            runs += 1 if n else 0
    files = outputs.gc(older_than_s=ttl_s)
    click.echo(f"deleted {deleted} outputs of {runs} shadow runs; removed {files} unreferenced files")
