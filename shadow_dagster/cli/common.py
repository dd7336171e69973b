"""Helpers every `shadow-dagster` command module shares (no Dagster import at module load)."""

from __future__ import annotations

import functools
import json
import os

import click


def user_errors(fn):
    """Turn the errors a user can fix into one clear line and a non-zero exit, no traceback."""
    from shadow_dagster.errors import ShadowDagsterError

    fixable = (ShadowDagsterError, ValueError, FileNotFoundError)   # every shadow-dagster error says what to fix

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except fixable as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def dagster_home() -> str:
    """$DAGSTER_HOME, which must name an existing folder: no command creates it."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise click.ClickException("DAGSTER_HOME is not set: point it at your Dagster instance directory")
    if not os.path.isdir(home):
        raise click.ClickException(
            f"DAGSTER_HOME={home} does not exist: create that folder (with the dagster.yaml of the README) "
            "or point DAGSTER_HOME at your Dagster instance directory")
    return home


# what Dagster keeps in a home it has used (its default storage) or was configured for
_INSTANCE_MARKERS = ("dagster.yaml", "history", "storage", "schedules")


def dagster_instance(*, read: bool = False):
    """The instance in $DAGSTER_HOME, with one clear line when it cannot be opened. With `read`,
    a folder that holds no Dagster instance yet is refused instead of being made into one."""
    home = dagster_home()
    if read and not any(os.path.exists(os.path.join(home, m)) for m in _INSTANCE_MARKERS):
        raise click.ClickException(
            f"DAGSTER_HOME={home} holds no Dagster instance (no dagster.yaml, no run storage): nothing to read")
    from dagster import DagsterError, DagsterInstance

    try:
        return DagsterInstance.get()
    except DagsterError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(f"cannot open the Dagster instance in {home}: {first}") from None


def store_url_for(store_url: str | None) -> str:
    """The signal store URL to use; the default one lives in $DAGSTER_HOME, which must exist."""
    from shadow_dagster.store.engine import ENV_URL
    from shadow_dagster.store.layout import ShadowStorage

    if not store_url and not os.environ.get(ENV_URL) and os.environ.get("DAGSTER_HOME"):
        dagster_home()
    return ShadowStorage(signal_store_url=store_url).location("signal_store_url")


def open_store(store_url: str | None, retention_days: float = 30.0, *, read: bool = False):
    """The signal store. With `read` nothing is created: a store that does not exist yet gives
    None (nothing ingested), a SQLite store whose folder does not exist is an error."""
    from shadow_dagster.store.engine import normalise_url
    from shadow_dagster.store.signal_store import SignalStore

    url = normalise_url(store_url_for(store_url))
    if read and not store_exists(url):
        return None
    return SignalStore(url, retention_days=retention_days)


def store_exists(url: str) -> bool:
    """Whether the signal store at `url` holds its table, without creating anything (a SQLite
    store whose folder is missing is an error: the URL is wrong)."""
    from pathlib import Path

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from shadow_dagster.store.engine import create_engine

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database)
        if not path.parent.is_dir():
            raise click.ClickException(f"no signal store at {path}: its folder {path.parent} does not exist")
        if not path.is_file():
            return False
        engine = sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")   # read-only: no WAL switch
    else:
        engine = create_engine(url)
    try:
        return sa.inspect(engine).has_table("shadow_signals")
    except sa.exc.OperationalError as exc:
        from shadow_dagster.store.signal_store import SignalStoreUnavailable

        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise SignalStoreUnavailable(f"signal store {parsed.render_as_string(hide_password=True)} "
                                     f"is unreachable: {reason}") from None
    finally:
        engine.dispose()


def no_store_message(store_url: str | None) -> str:
    from sqlalchemy.engine import make_url

    from shadow_dagster.store.engine import normalise_url

    url = make_url(normalise_url(store_url_for(store_url)))
    where = url.database if url.get_backend_name() == "sqlite" else url.render_as_string(hide_password=True)
    return f"no signal store at {where} yet: run `shadow-dagster ingest` first"


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, sort_keys=True, default=str))


def echo_rows(rows, *, as_json: bool, to_json, empty: str, header: str, line) -> None:
    """Rows as JSON lines (`to_json(row)`), or `empty` when there are none, or a table: `header`,
    then `line(row)` for each."""
    if as_json:
        for row in rows:
            echo_json(to_json(row))
    elif not rows:
        click.echo(empty)
    else:
        click.echo(header)
        for row in rows:
            click.echo(line(row))
