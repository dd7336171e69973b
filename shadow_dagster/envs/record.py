"""What a shadow step that wrote through shadow-aware resources leaves in the shadow store, and its
promotion into live storage."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

from shadow_dagster.envs import duckdb_env, files_env
from shadow_dagster.envs.workspace import Effect, PromotionRefused
from shadow_dagster.errors import ShadowDagsterError

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


class PromotionIncomplete(ShadowDagsterError, RuntimeError):
    """Promotion failed after part of it was applied in live storage: the step must not compute on
    top of it silently."""


def target_of(effect: Effect) -> tuple[str, str]:
    """(kind, live store) an effect lands in: a DuckDB file, a PostgreSQL URL#schema, a folder."""
    t = effect.target
    if effect.kind == files_env.KIND:
        return effect.kind, t["root"]
    if effect.kind == duckdb_env.KIND:
        return effect.kind, t["database"]
    return effect.kind, f"{t['url']}#{t['schema']}"


def promote(record: EffectsRecord) -> None:
    """Apply every effect in live storage, one live store at a time (each store all or nothing).

    Every store is checked first; a PromotionRefused then means nothing was applied. A failure
    after one store was applied raises PromotionIncomplete."""
    from shadow_dagster.envs import postgres_env

    modules = {duckdb_env.KIND: duckdb_env, postgres_env.KIND: postgres_env, files_env.KIND: files_env}
    unknown = {e.kind for e in record.effects} - set(modules)
    if unknown:
        raise PromotionRefused(f"no promoter for effects of kind {', '.join(sorted(unknown))}")
    stores: dict[tuple[str, str], list[Effect]] = {}
    for e in record.effects:
        stores.setdefault(target_of(e), []).append(e)
    order = sorted(stores, key=lambda k: (k[0] == files_env.KIND, k))   # files last: cheapest to redo
    for key in order:
        modules[key[0]].check(stores[key])
    applied: list[str] = []
    for key in order:
        try:
            modules[key[0]].promote(stores[key])
        except BaseException as exc:
            if applied:
                raise PromotionIncomplete(f"promoted into {', '.join(applied)} but not into {key[1]}: {exc}") from exc
            raise
        applied.append(key[1])
