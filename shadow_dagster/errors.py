"""shadow-dagster's exceptions share one base, defined without Dagster so the CLI and the pure
core can raise and catch them cheaply. Each also keeps its builtin kind (ValueError, RuntimeError,
PermissionError), so existing `except ValueError` code goes on working."""


class ShadowDagsterError(Exception):
    """Base of every exception shadow-dagster raises on purpose."""


class ShadowDagsterUserError(ShadowDagsterError, RuntimeError):
    """An error whose message tells the user what is wrong and how to fix it."""


class PerRunEventStorageError(ShadowDagsterUserError):
    """The instance keeps one event database per run; global ingestion would miss step events."""
