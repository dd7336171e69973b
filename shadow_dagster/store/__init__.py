"""Durable storage: the signal time-series table and its SQLAlchemy engines."""
