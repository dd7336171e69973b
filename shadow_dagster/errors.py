"""Errors a user can fix, defined without Dagster so the CLI can catch them cheaply."""


class ShadowDagsterUserError(RuntimeError):
    """An error whose message tells the user what is wrong and how to fix it."""


class PerRunEventStorageError(ShadowDagsterUserError):
    """The instance keeps one event database per run; global ingestion would miss step events."""
