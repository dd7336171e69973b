"""The shadow output store: files keyed by provenance key under an isolated root, indexed in SQL.

Lifecycle of a row: `written` (claimed, file being written) -> `complete` (file fully written and
fsynced, row committed with its content hash) -> `promoted` (copied into live storage) or
`deleted` (rolled back). Only complete or promoted rows whose file still hashes to the recorded
content hash are ever reused. No Dagster import.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from shadow_dagster.speculation.atomic import TEMP_PREFIX, ContentMismatch, atomic_write, read_verified
from shadow_dagster.speculation.isolation import check_outside
from shadow_dagster.speculation.object_paths import object_path
from shadow_dagster.speculation.provenance import content_hash
from shadow_dagster.store.engine import create_engine, create_schema

WRITTEN, COMPLETE, PROMOTED, DELETED = "written", "complete", "promoted", "deleted"
STATUSES = (WRITTEN, COMPLETE, PROMOTED, DELETED)
REUSABLE = (COMPLETE, PROMOTED)

metadata = sa.MetaData()
shadow_outputs = sa.Table(
    "shadow_outputs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("provenance_key", sa.String(64), nullable=False, unique=True),
    sa.Column("asset_key", sa.Text, nullable=False),
    sa.Column("partition_key", sa.Text, nullable=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("prediction_id", sa.String(255), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("relpath", sa.Text, nullable=True),
    sa.Column("content_hash", sa.String(64), nullable=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=True),
    sa.Column("compute_seconds", sa.Float, nullable=True),
    sa.Column("data_version", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_shadow_outputs_run", "run_id", "asset_key"),
    sa.Index("ix_shadow_outputs_prediction", "prediction_id"),
)


@dataclass(frozen=True)
class ShadowOutput:
    """One indexed shadow output; `path` is absolute (None until the file exists)."""

    provenance_key: str
    asset_key: str
    partition_key: str | None
    run_id: str
    prediction_id: str | None
    status: str
    path: Path | None
    content_hash: str | None
    size_bytes: int | None
    compute_seconds: float | None
    data_version: str | None
    created_at: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _check_key(provenance_key: str) -> str:
    if not (isinstance(provenance_key, str) and len(provenance_key) == 64
            and all(c in "0123456789abcdef" for c in provenance_key)):
        raise ValueError(f"provenance key must be 64 lowercase hex characters, got {provenance_key!r}")
    return provenance_key


class ShadowOutputStore:
    """Shadow output files under `root`, indexed in the `shadow_outputs` table at `url`.

    `forbidden_roots` are live storage roots: every write checks, on resolved real paths, that it
    lands outside them and raises ShadowIsolationError otherwise.
    """

    def __init__(self, root: str | os.PathLike, url: str, forbidden_roots: Iterable[str | os.PathLike] = ()):
        if not root:
            raise ValueError("shadow output store needs a root directory")
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.forbidden_roots = tuple(os.path.abspath(os.fspath(r)) for r in forbidden_roots)
        self.url = url
        self.engine = create_engine(url)
        create_schema(metadata, self.engine)

    # -- writing -----------------------------------------------------------------------------
    def object_path(self, provenance_key: str, digest: str) -> Path:
        """Where a payload lives: content-addressed within its provenance key, so rows and files agree."""
        return object_path(self.root, provenance_key, digest)

    def write(
        self,
        provenance_key: str,
        payload: bytes,
        *,
        asset_key: str,
        partition_key: str | None,
        run_id: str,
        prediction_id: str | None = None,
        compute_seconds: float | None = None,
        data_version: str | None = None,
    ) -> ShadowOutput:
        """Store `payload` atomically and mark it complete; a crash before the end leaves no complete row."""
        _check_key(provenance_key)
        if not isinstance(payload, (bytes, bytearray)):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        if not run_id:
            raise ValueError("a shadow output needs the id of the run that wrote it")
        digest = content_hash(bytes(payload))
        final = self.object_path(provenance_key, digest)
        check_outside(final.parent, self.forbidden_roots)
        final.parent.mkdir(parents=True, exist_ok=True)
        check_outside(final.parent, self.forbidden_roots)  # again, now that every component exists
        check_outside(final, self.forbidden_roots)
        now = _now()
        row = dict(asset_key=asset_key, partition_key=partition_key, run_id=run_id,
                   prediction_id=prediction_id, compute_seconds=compute_seconds,
                   data_version=data_version, updated_at=now)
        self._claim(provenance_key, row, now)
        atomic_write(final, bytes(payload))
        with self.engine.begin() as conn:
            old = conn.execute(sa.select(shadow_outputs.c.relpath).where(
                shadow_outputs.c.provenance_key == provenance_key)).scalar()
            conn.execute(shadow_outputs.update().where(shadow_outputs.c.provenance_key == provenance_key).values(
                **row, status=COMPLETE, relpath=str(final.relative_to(self.root)),
                content_hash=digest, size_bytes=len(payload)))
        if old and old != str(final.relative_to(self.root)):
            (self.root / old).unlink(missing_ok=True)
        return self.get(provenance_key)

    def _claim(self, provenance_key: str, row: dict, now: dt.datetime) -> None:
        """Insert a `written` row for a new key; an existing row keeps its state until the file is in place."""
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(shadow_outputs.c.id).where(
                shadow_outputs.c.provenance_key == provenance_key)).first()
            if exists is None:
                try:
                    with conn.begin_nested():
                        conn.execute(shadow_outputs.insert().values(
                            provenance_key=provenance_key, status=WRITTEN, created_at=now, **row))
                except sa.exc.IntegrityError:
                    pass  # a concurrent writer claimed it; the final update decides

    # -- reading -----------------------------------------------------------------------------
    def _to_output(self, r) -> ShadowOutput:
        return ShadowOutput(
            provenance_key=r.provenance_key, asset_key=r.asset_key, partition_key=r.partition_key,
            run_id=r.run_id, prediction_id=r.prediction_id, status=r.status,
            path=(self.root / r.relpath) if r.relpath else None, content_hash=r.content_hash,
            size_bytes=r.size_bytes, compute_seconds=r.compute_seconds, data_version=r.data_version,
            created_at=r.created_at)

    def get(self, provenance_key: str) -> ShadowOutput | None:
        """The row for a key in any status, or None."""
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(shadow_outputs).where(
                shadow_outputs.c.provenance_key == provenance_key)).first()
        return self._to_output(r) if r else None

    def get_reusable(self, provenance_key: str) -> ShadowOutput | None:
        """The complete (or already promoted) output for a key, or None. Its file is not yet verified."""
        out = self.get(provenance_key)
        return out if out is not None and out.status in REUSABLE and out.path and out.content_hash else None

    def find_for_run(self, run_id: str, asset_key: str, partition_key: str | None) -> ShadowOutput | None:
        """The reusable output a given shadow run wrote for an asset (partition), or None."""
        q = sa.select(shadow_outputs).where(
            shadow_outputs.c.run_id == run_id, shadow_outputs.c.asset_key == asset_key,
            shadow_outputs.c.status.in_(REUSABLE))
        q = q.where(shadow_outputs.c.partition_key.is_(None) if partition_key is None
                    else shadow_outputs.c.partition_key == partition_key)
        with self.engine.connect() as conn:
            r = conn.execute(q.order_by(shadow_outputs.c.id.desc())).first()
        return self._to_output(r) if r else None

    def read(self, output: ShadowOutput) -> bytes:
        """The payload, verified against the recorded content hash and size (ContentMismatch if not)."""
        if output.path is None or output.content_hash is None:
            raise ContentMismatch(f"shadow output {output.provenance_key} is not complete")
        check_outside(output.path, self.forbidden_roots)
        return read_verified(output.path, output.content_hash, output.size_bytes)

    def list(self, *, run_id: str | None = None, prediction_id: str | None = None,
             status: str | None = None) -> list[ShadowOutput]:
        """Rows filtered by run, prediction and status, oldest first."""
        q = sa.select(shadow_outputs)
        if run_id is not None:
            q = q.where(shadow_outputs.c.run_id == run_id)
        if prediction_id is not None:
            q = q.where(shadow_outputs.c.prediction_id == prediction_id)
        if status is not None:
            if status not in STATUSES:
                raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
            q = q.where(shadow_outputs.c.status == status)
        with self.engine.connect() as conn:
            return [self._to_output(r) for r in conn.execute(q.order_by(shadow_outputs.c.id))]

    # -- state changes -----------------------------------------------------------------------
    def mark_promoted(self, provenance_key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(shadow_outputs.update().where(
                shadow_outputs.c.provenance_key == provenance_key,
                shadow_outputs.c.status.in_(REUSABLE)).values(status=PROMOTED, updated_at=_now()))

    def delete_outputs(self, *, prediction_id: str | None = None, run_id: str | None = None) -> int:
        """Rollback: mark the outputs of a prediction or a shadow run deleted, then remove their files.

        Rows are marked first so that a crash in between leaves orphan files (removed by gc), never a
        reusable row without its file. Returns the number of rows deleted.
        """
        if (prediction_id is None) == (run_id is None):
            raise ValueError("delete_outputs needs exactly one of prediction_id or run_id")
        cond = (shadow_outputs.c.prediction_id == prediction_id) if prediction_id is not None \
            else (shadow_outputs.c.run_id == run_id)
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(shadow_outputs.c.id, shadow_outputs.c.relpath, shadow_outputs.c.run_id).where(
                cond, shadow_outputs.c.status != DELETED)).all()
            if rows:
                conn.execute(shadow_outputs.update().where(
                    shadow_outputs.c.id.in_([r.id for r in rows])).values(status=DELETED, updated_at=_now()))
        for r in rows:
            if r.relpath:
                (self.root / r.relpath).unlink(missing_ok=True)
        for run in sorted({r.run_id for r in rows} | ({run_id} if run_id else set())):
            shutil.rmtree(self.effects_dir(run), ignore_errors=True)   # what its steps wrote through resources
        return len(rows)

    def effects_dir(self, run_id: str) -> Path:
        """Where shadow run `run_id` keeps what its steps wrote through shadow-aware resources."""
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.root / "effects" / run_id

    def gc(self, older_than_s: float = 3600.0) -> int:
        """Remove temp files and files no reusable row points to, once older than `older_than_s`
        (so that writes in progress are left alone); returns the number of files removed."""
        import time

        cutoff = time.time() - older_than_s
        objects = self.root / "objects"
        with self.engine.connect() as conn:
            live = {r.relpath for r in conn.execute(sa.select(shadow_outputs.c.relpath).where(
                shadow_outputs.c.status.in_(REUSABLE)))}
        removed = 0
        effects = self.root / "effects"
        with self.engine.connect() as conn:
            kept = {r.run_id for r in conn.execute(sa.select(shadow_outputs.c.run_id).where(
                shadow_outputs.c.status.in_(REUSABLE + (WRITTEN,))).distinct())}
        for run_dir in (effects.iterdir() if effects.exists() else ()):
            if run_dir.name not in kept and run_dir.stat().st_mtime <= cutoff:
                shutil.rmtree(run_dir, ignore_errors=True)
                removed += 1
        for path in (objects.rglob("*") if objects.exists() else ()):
            if path.is_file() and path.stat().st_mtime <= cutoff and (
                    path.name.startswith(TEMP_PREFIX) or str(path.relative_to(self.root)) not in live):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def dispose(self) -> None:
        self.engine.dispose()


def delete_shadow_outputs(store: ShadowOutputStore, *, prediction_id: str | None = None,
                          run_id: str | None = None) -> int:
    """Rollback helper: delete the shadow outputs of a prediction or of a shadow run."""
    return store.delete_outputs(prediction_id=prediction_id, run_id=run_id)
