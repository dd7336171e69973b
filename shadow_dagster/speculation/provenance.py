"""Provenance keys: the identity of a step's output, used to decide whether a shadow output is reusable.

A key is the sha256 of canonical JSON over the asset key, partition key, code version, the data
versions of every input (sorted by input name), the step's config and the library version. Like
Dagster's logical data version, a key is refused when any part is unknown.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from shadow_dagster import __version__
from shadow_dagster.errors import ShadowDagsterError

# Dagster's markers for "no version": UNKNOWN (logical version undefined) and NULL (never materialised).
UNKNOWN_VERSION_VALUES = frozenset({"", "UNKNOWN", "NULL"})
KEY_SCHEMA = 1  # bump when the key's layout changes so that old shadow outputs stop matching


class ProvenanceUnknown(ShadowDagsterError, ValueError):
    """A provenance key cannot be computed because a part of it is unknown; reuse must be refused."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, no NaN; raises ProvenanceUnknown otherwise."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ProvenanceUnknown(f"value is not canonical JSON ({exc})") from None


def content_hash(data: bytes) -> str:
    """The sha256 hex digest of bytes (the content hash of a stored output)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"content_hash needs bytes, got {type(data).__name__}")
    return hashlib.sha256(data).hexdigest()


def _known(value: Any) -> bool:
    return isinstance(value, str) and value.strip() not in UNKNOWN_VERSION_VALUES


def _no_floats_that_drift(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ProvenanceUnknown(f"{where} contains a non-finite float")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ProvenanceUnknown(f"{where} has a non-string key {k!r}")
            _no_floats_that_drift(v, where)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _no_floats_that_drift(v, where)


def provenance_parts(
    *,
    asset_key: str,
    partition_key: str | None,
    code_version: str | None,
    input_data_versions: Mapping[str, str | None],
    config: Any = None,
    library_version: str = __version__,
) -> dict[str, Any]:
    """The validated parts of a provenance key, as a JSON-ready dict; raises ProvenanceUnknown."""
    if not isinstance(asset_key, str) or not asset_key:
        raise ProvenanceUnknown("asset key is missing")
    if partition_key is not None and not isinstance(partition_key, str):
        raise ProvenanceUnknown(f"partition key {partition_key!r} is not a string")
    if not _known(code_version):
        raise ProvenanceUnknown(f"asset {asset_key} has no code version (set code_version=...)")
    if not isinstance(input_data_versions, Mapping):
        raise ProvenanceUnknown("input data versions must be a mapping of input name to version")
    inputs: dict[str, str] = {}
    for name in sorted(input_data_versions):
        version = input_data_versions[name]
        if not isinstance(name, str) or not name:
            raise ProvenanceUnknown(f"input name {name!r} is not a non-empty string")
        if not _known(version):
            raise ProvenanceUnknown(f"data version of input {name} is unknown ({version!r})")
        inputs[name] = version  # verbatim: Dagster compares versions as exact strings
    _no_floats_that_drift(config, "config")
    if not _known(library_version):
        raise ProvenanceUnknown("library version is unknown")
    return {
        "schema": KEY_SCHEMA,
        "asset_key": asset_key,
        "partition_key": partition_key,
        "code_version": code_version,
        "inputs": inputs,
        "config": config,
        "library_version": library_version,
    }


def provenance_key(**parts: Any) -> str:
    """sha256 over the canonical JSON of provenance_parts(**parts); raises ProvenanceUnknown."""
    doc = canonical_json(provenance_parts(**parts))
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()


def is_provenance_key(value: Any) -> bool:
    """Whether `value` has the form of a provenance key (64 lower-case hex digits)."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def try_provenance_key(**parts: Any) -> tuple[str | None, str | None]:
    """(key, None) when computable, else (None, reason): the non-raising form used by reuse checks."""
    try:
        return provenance_key(**parts), None
    except ProvenanceUnknown as exc:
        return None, exc.reason
