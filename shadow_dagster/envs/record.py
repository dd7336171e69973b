"""What a shadow step that wrote through shadow-aware resources leaves in the shadow store, and its
promotion into live storage."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

from shadow_dagster.envs import duckdb_env, files_env
from shadow_dagster.envs.workspace import Effect, PromotionRefused

_MARK = b"shadow-dagster-effects:1\n"


@dataclass(frozen=True)
class EffectsRecord:
    """The effects of one shadow step and the MaterializeResult parts to replay on reuse."""

    effects: tuple[Effect, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    data_version: str | None = None

    def dumps(self) -> bytes:
        return _MARK + pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    def describe(self) -> str:
        return "; ".join(e.describe() for e in self.effects)


def loads(payload: bytes) -> EffectsRecord | None:
    """The record in a shadow output's bytes, or None for an ordinary (value) output."""
    if not payload.startswith(_MARK):
        return None
    record = pickle.loads(payload[len(_MARK):])
    return record if isinstance(record, EffectsRecord) else None


def promote(record: EffectsRecord) -> None:
    """Apply every effect in live storage; raises PromotionRefused (nothing applied for the kind that
    refused) when a live object changed since the shadow step read it."""
    kinds = {e.kind for e in record.effects}
    unknown = kinds - {duckdb_env.KIND, files_env.KIND, "postgres_table"}
    if unknown:
        raise PromotionRefused(f"no promoter for effects of kind {', '.join(sorted(unknown))}")
    files = [e for e in record.effects if e.kind == files_env.KIND]
    files_env.check(files)   # the cheap checks before any live write
    tables = [e for e in record.effects if e.kind == duckdb_env.KIND]
    if tables:
        duckdb_env.promote(tables)
    pg_tables = [e for e in record.effects if e.kind == "postgres_table"]
    if pg_tables:
        from shadow_dagster.envs import postgres_env

        postgres_env.promote(pg_tables)
    if files:
        files_env.promote(files)

