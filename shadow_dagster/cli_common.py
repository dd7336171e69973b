"""Helpers every `shadow-dagster` command module shares (no Dagster import at module load)."""

from __future__ import annotations

import functools
import json
import os

import click


def user_errors(fn):
    """Turn the errors a user can fix into one clear line and a non-zero exit, no traceback."""
    from shadow_dagster.errors import ShadowDagsterUserError
    from shadow_dagster.store.engine import StoreConfigError
    from shadow_dagster.store.signal_store import SignalStoreUnavailable

    fixable = (ShadowDagsterUserError, StoreConfigError, SignalStoreUnavailable, ValueError, FileNotFoundError)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except fixable as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def dagster_instance():
    """The instance in $DAGSTER_HOME, with a clear error when it is not set."""
    if not os.environ.get("DAGSTER_HOME"):
        raise click.ClickException("DAGSTER_HOME is not set: point it at your Dagster instance directory")
    from dagster import DagsterInstance

    return DagsterInstance.get()


def open_store(store_url: str | None, retention_days: float = 30.0):
    from shadow_dagster.store.engine import default_url
    from shadow_dagster.store.signal_store import SignalStore

    return SignalStore(store_url or default_url(), retention_days=retention_days)


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, sort_keys=True, default=str))
