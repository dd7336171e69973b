"""The `shadow-dagster` command: every command group registered here, in one place.

The product's commands come from the modules of this package; packages installed beside it add
theirs through the entry point group `shadow_dagster.cli` (this repository's benchmarks and demo:
`bench`, `simulate`). Commands import what they need when they run, so `--help` stays fast.
"""

from __future__ import annotations

import click

from shadow_dagster import __version__


@click.group()
@click.version_option(__version__, prog_name="shadow-dagster")
def main() -> None:
    """shadow-dagster: learn how recurring Dagster workflows run and do safe work ahead of time."""


def _register() -> None:
    from importlib.metadata import entry_points

    from shadow_dagster.cli.fingerprint import fingerprint
    from shadow_dagster.cli.shadow import shadow
    from shadow_dagster.cli.signals import ingest, predict, signals

    for command in (ingest, signals, predict, fingerprint, shadow):
        main.add_command(command)
    for ep in entry_points(group="shadow_dagster.cli"):
        main.add_command(ep.load(), ep.name)


_register()

__all__ = ["main"]
