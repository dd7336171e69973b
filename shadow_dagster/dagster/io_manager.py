"""ShadowIOManager: Dagster's filesystem pickling IO manager, made shadow-aware.

Live runs behave exactly like `FilesystemIOManager(base_dir=...)` (same paths, same pickle bytes),
except that an output the reuse wrapper took from a verified shadow output is promoted into live
storage by an atomic, hash-checked copy. Shadow runs (tag `shadow_dagster/shadow=true`) read live
inputs but write only into the shadow store, keyed by provenance; a write that would resolve into
live storage raises ShadowIsolationError.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import (
    ConfigurableIOManagerFactory,
    InitResourceContext,
    InputContext,
    IOManager,
    MetadataValue,
    OutputContext,
)
from pydantic import Field

from shadow_dagster.dagster.compat import PICKLE_PROTOCOL, PickledObjectFilesystemIOManager
from shadow_dagster.dagster.critical import guard_step
from shadow_dagster.dagster.shadow_env import ShadowSafe
from shadow_dagster.dagster.step_provenance import compute_step_provenance
from shadow_dagster.speculation.atomic import ContentMismatch, atomic_copy, atomic_write
from shadow_dagster.speculation.isolation import ShadowIsolationError, check_disjoint, check_outside
from shadow_dagster.speculation.prefetch import DEFAULT_MAX_BYTES, PrefetchCache
from shadow_dagster.speculation.provenance import is_provenance_key
from shadow_dagster.store.layout import ShadowStorage
from shadow_dagster.tags import CONTENT_HASH, OUTPUT_BYTES, PREDICTION_TAG, PREFIX, PROVENANCE_KEY, REUSED_FROM, is_shadow_run

PROVENANCE_KEY_META = PROVENANCE_KEY                 # output metadata: key of a shadow or reused output
COMPUTE_SECONDS_META = PREFIX + "compute_seconds"   # output metadata set by @shadow_reusable in shadow runs
DATA_VERSION_META = PREFIX + "data_version"         # output metadata: user data version to replay on reuse
SHADOW_PATH_META = PREFIX + "shadow_path"
PREFETCH_HIT_META = PREFIX + "prefetched"           # input metadata: read from the prefetch cache
PREFETCH_BYTES_META = PREFIX + "prefetched_bytes"

if TYPE_CHECKING:
    from shadow_dagster.store.outputs import ShadowOutputStore


def get_store(shadow_dir: str, store_url: str, live_root: str) -> ShadowOutputStore:
    """One store (and engine) per process for a given configuration."""
    return ShadowStorage(output_store_url=store_url, shadow_dir=shadow_dir).output_store(live_root)


def serialize(obj: Any) -> bytes:
    """The bytes Dagster's FilesystemIOManager writes for `obj`."""
    return pickle.dumps(obj, PICKLE_PROTOCOL)


def deserialize(data: bytes) -> Any:
    return pickle.loads(data)


def _meta_value(meta, key: str):
    value = (meta or {}).get(key)
    return getattr(value, "value", value)


class ShadowLiveIOManager(PickledObjectFilesystemIOManager):
    """The live-run IO manager: FilesystemIOManager behaviour plus atomic promotion of reused outputs
    and reads through the prefetch cache."""

    def __init__(self, base_dir: str, store: ShadowOutputStore, prefetch: PrefetchCache | None = None):
        super().__init__(base_dir=base_dir)
        self.store = store
        self.live_root = base_dir
        self.prefetch = prefetch

    def load_from_path(self, context: InputContext, path) -> Any:
        data = self._prefetched(context, path)
        if data is not None:
            return deserialize(data)
        return self.read_live(context, path)

    def read_live(self, context: InputContext, path) -> Any:
        """The read FilesystemIOManager does (a subclass may model a remote store here)."""
        return super().load_from_path(context, path)

    def _prefetched(self, context: InputContext, path) -> bytes | None:
        """Verified cached bytes of the live file at `path`, or None (then live storage is read)."""
        if self.prefetch is None:
            return None
        try:
            data = self.prefetch.get_file(os.fspath(path))
        except (OSError, ValueError):
            return None
        if data is None:
            return None
        context.log.info(f"input {path} read from the prefetch cache ({len(data)} bytes, identity and sha256 verified)")
        if context.has_asset_key and (not context.has_asset_partitions or len(context.asset_partition_keys) == 1):
            context.add_input_metadata({PREFETCH_HIT_META: True, PREFETCH_BYTES_META: len(data)})
        return data

    def live_output_path(self, context: OutputContext):
        """The single file FilesystemIOManager would write this output to."""
        if context.has_asset_partitions:
            paths = self._get_paths_for_partitions(context)
            if len(paths) != 1:
                raise ValueError("ShadowIOManager persists one partition per output, got a partition range")
            path = next(iter(paths.values()))
            self._handle_transition_to_partitioned_asset(context, path.parent)
            return path
        return self._get_path(context)

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        key = _meta_value(context.output_metadata, PROVENANCE_KEY_META)
        if _meta_value(context.output_metadata, REUSED_FROM) and is_provenance_key(key) and self._promote(context, key):
            return
        super().handle_output(context, obj)

    def _promote(self, context: OutputContext, key: str) -> bool:
        """Promote the shadow output `key` only if it is this very step's: same asset, partition and
        the provenance key recomputed now (output metadata naming a key is a claim, not a proof)."""
        out = self.store.get_reusable(key)
        if out is None or not context.has_asset_key:
            return False
        partition = context.partition_key if context.has_asset_partitions else None
        if out.asset_key != context.asset_key.to_user_string() or out.partition_key != partition:
            context.log.warning(f"output metadata names shadow output {key} of another asset; not promoted")
            return False
        from shadow_dagster.dagster.step_provenance import compute_step_provenance

        if compute_step_provenance(context.step_context, context.asset_key, live_inputs_only=True).key != key:
            context.log.warning(f"shadow output {key} does not match this step's provenance; not promoted")
            return False
        path = self.live_output_path(context)
        self.make_directory(path.parent)
        try:
            size = atomic_copy(out.path, str(path), out.content_hash)
        except (ContentMismatch, OSError) as exc:  # the verified value is still written below
            context.log.warning(f"promotion of shadow output {key} failed ({exc}); writing the value")
            return False
        self.store.mark_promoted(key)
        context.add_output_metadata({"path": MetadataValue.path(str(path)), OUTPUT_BYTES: size})
        return True


class ShadowRunIOManager(IOManager):
    """The shadow-run IO manager: reads live (or this run's shadow) inputs through `live` (any IO
    manager), writes shadow outputs only, never through `live`."""

    def __init__(self, live: IOManager, store: ShadowOutputStore, run_id: str, prediction_id: str | None):
        self.live = live
        base_dir = getattr(live, "base_dir", None)
        # scratch writes stay out of live storage: the live IO manager's root, else the store's own
        # forbidden (live) roots, the instance's storage directory for the default store
        self.live_roots = [base_dir] if base_dir else list(store.forbidden_roots)
        self.store = store
        self.run_id = run_id
        self.prediction_id = prediction_id

    def _scratch_path(self, parts) -> Path:
        """Run-scoped place for outputs without a provenance key (op outputs, unknown provenance)."""
        safe = [p.replace("..", "__").lstrip("/") for p in parts]
        return self.store.root / "runs" / self.run_id / Path(*safe)

    def _write_scratch(self, parts, payload: bytes) -> Path:
        path = self._scratch_path(parts)
        check_outside(path.parent, self.live_roots)
        path.parent.mkdir(parents=True, exist_ok=True)
        check_outside(path, self.live_roots)
        atomic_write(path, payload)
        return path

    @staticmethod
    def _parts(context) -> list[str]:
        if context.has_asset_key:
            parts = list(context.asset_key.path)
            if context.has_asset_partitions:
                parts.append(str(context.asset_partition_key))
            return parts
        return [context.step_key, context.name]

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        guard_step(context.step_context)
        payload = serialize(obj)
        if not context.has_asset_key:
            path = self._write_scratch(self._parts(context), payload)
            context.add_output_metadata({SHADOW_PATH_META: MetadataValue.path(str(path))})
            return
        from shadow_dagster.dagster.step_effects import wrote_through_resources

        if wrote_through_resources(self.run_id, context.step_key):   # the value alone does not stand for the step
            path = self._write_scratch(self._parts(context), payload)
            context.add_output_metadata({SHADOW_PATH_META: MetadataValue.path(str(path))})
            return
        prov = compute_step_provenance(context.step_context, context.asset_key, live_inputs_only=False)
        if prov.key is None:
            context.log.warning(f"shadow output of {prov.asset_key} is not reusable: {prov.reason}")
            path = self._write_scratch(self._parts(context), payload)
            context.add_output_metadata({SHADOW_PATH_META: MetadataValue.path(str(path))})
            return
        seconds = _meta_value(context.output_metadata, COMPUTE_SECONDS_META)
        data_version = _meta_value(context.output_metadata, DATA_VERSION_META)
        out = self.store.write(prov.key, payload, asset_key=prov.asset_key, partition_key=prov.partition_key,
                               run_id=self.run_id, prediction_id=self.prediction_id,
                               compute_seconds=float(seconds) if seconds is not None else None,
                               data_version=data_version)
        context.add_output_metadata({
            PROVENANCE_KEY_META: prov.key, CONTENT_HASH: out.content_hash,
            SHADOW_PATH_META: MetadataValue.path(str(out.path)), OUTPUT_BYTES: len(payload)})

    def load_input(self, context: InputContext) -> Any:
        step = context.step_context
        guard_step(step)
        if not context.has_asset_key:  # op output of this run
            return deserialize(self._scratch_path(self._parts(context.upstream_output)).read_bytes())
        info = step.maybe_fetch_and_get_input_asset_version_info(context.asset_key)
        producer = info.run_id if info is not None else None
        if producer:   # "" is a runless (reported) materialization: live
            run = step.instance.get_run_by_id(producer)
            if run is None:
                # purged after this step read the asset index: its value is gone, and live storage
                # does not hold the materialization the step's provenance pins
                raise FileNotFoundError(
                    f"input {context.asset_key.to_user_string()} was last materialised by run {producer}, "
                    "which no longer exists (a deleted shadow run); not reading live storage instead")
            if is_shadow_run(run.tags):
                return self._load_shadow(context, producer)
        return self.live.load_input(context)

    def _load_shadow(self, context: InputContext, producer: str) -> Any:
        name = context.asset_key.to_user_string()
        partition = str(context.asset_partition_key) if context.has_asset_partitions else None
        out = self.store.find_for_run(producer, name, partition)
        if out is not None:
            return deserialize(self.store.read(out))
        if producer == self.run_id:
            scratch = self._scratch_path(list(context.asset_key.path) + ([partition] if partition else []))
            if scratch.exists():
                return deserialize(scratch.read_bytes())
        raise FileNotFoundError(
            f"input {name} was last materialised by shadow run {producer}, whose output is not in the "
            "shadow store (deleted or never completed); the shadow run cannot read it from live storage")


def default_store(instance) -> ShadowOutputStore:
    """The shadow store ShadowIOManager uses by default (DAGSTER_HOME/shadow_dagster/outputs,
    indexed in the shadow-dagster store): where assets with any other IO manager keep shadow outputs."""
    _, shadow_dir, store_url, _ = ShadowIOManager().dirs(instance)
    return get_store(shadow_dir, store_url, instance.storage_directory())


def default_shadow_dir(instance) -> str:
    """The default store's root, without opening the store."""
    return ShadowIOManager().dirs(instance)[1]


def overlay_io_manager(original, live_key: str):
    """An IO manager definition that, in a run of the shadow runner, stands in for the user's own
    IO manager `original` (bound under `live_key`): outputs go to the default shadow store, inputs
    this run did not make are read through `original`."""
    from dagster import io_manager

    @io_manager(required_resource_keys={live_key},
                description="shadow-dagster: shadow outputs in the shadow store, live reads through your IO manager")
    def shadow_overlay(init_context):
        run = init_context.dagster_run
        return ShadowRunIOManager(getattr(init_context.resources, live_key), default_store(init_context.instance),
                                  run.run_id, run.tags.get(PREDICTION_TAG))

    shadow_overlay.shadow_original = original
    return shadow_overlay


class ShadowIOManager(ConfigurableIOManagerFactory, ShadowSafe):
    """Shadow-aware filesystem IO manager; a drop-in for `FilesystemIOManager(base_dir=...)`.

    Live runs read and write `base_dir` like FilesystemIOManager. Shadow runs write only under
    `shadow_dir`, indexed in the `shadow_outputs` table at `store_url`.
    """

    base_dir: str | None = Field(default=None, description="Live storage root (default: the instance's storage directory).")
    shadow_dir: str | None = Field(default=None, description="Shadow output root, disjoint from base_dir (default: DAGSTER_HOME/shadow_dagster/outputs).")
    store_url: str | None = Field(default=None, description="Database URL of the shadow_outputs index (default: the shadow-dagster store).")
    prefetch_dir: str | None = Field(default=None, description="Prefetch cache root, disjoint from base_dir and shadow_dir (default: prefetch/ next to shadow_dir).")
    prefetch_max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=0, description="Byte cap of the prefetch cache (least recently used copies are evicted; 0 turns it off).")

    def storage(self) -> ShadowStorage:
        """The locations this IO manager sets (the others at their defaults). An `EnvVar` field is
        read from this process's environment, as Dagster will read it when the resource starts;
        one that is not set counts as not given."""
        from dagster import EnvVar

        def value(v):
            return (v.get_value() or None) if isinstance(v, EnvVar) else v

        return ShadowStorage(output_store_url=value(self.store_url), shadow_dir=value(self.shadow_dir),
                             prefetch_dir=value(self.prefetch_dir))

    def dirs(self, instance) -> tuple[str, str, str, str]:
        """(base_dir, shadow_dir, store_url, prefetch_dir), absolute and checked disjoint."""
        base_dir = os.path.abspath(self.base_dir or instance.storage_directory())
        home = getattr(instance, "root_directory", None) or os.environ.get("DAGSTER_HOME")
        if not self.shadow_dir and not home:
            raise ValueError("ShadowIOManager needs shadow_dir (or DAGSTER_HOME for the default)")
        where = self.storage()
        shadow_dir, prefetch_dir = where.location("shadow_dir", home), where.location("prefetch_dir", home)
        check_disjoint(shadow_dir, base_dir)
        for label, root in (("base_dir", base_dir), ("shadow_dir", shadow_dir)):
            try:
                check_disjoint(prefetch_dir, root)
            except ShadowIsolationError as exc:
                raise ShadowIsolationError(f"prefetch_dir {prefetch_dir} overlaps {label} {root}; "
                                           "give the prefetch cache its own directory") from exc
        return base_dir, shadow_dir, where.location("output_store_url", home), prefetch_dir

    def resolve(self, context: InitResourceContext) -> tuple[str, str, str]:
        return self.dirs(context.instance)[:3]

    def prefetch_cache(self, instance) -> PrefetchCache | None:
        """The prefetch cache live runs read through (None when prefetch_max_bytes is 0)."""
        if self.prefetch_max_bytes == 0:
            return None
        return PrefetchCache(self.dirs(instance)[3], self.prefetch_max_bytes)

    def create_io_manager(self, context: InitResourceContext) -> IOManager:
        base_dir, shadow_dir, store_url = self.resolve(context)
        store = get_store(shadow_dir, store_url, base_dir)
        run = context.dagster_run
        if run is not None and is_shadow_run(run.tags):
            return ShadowRunIOManager(PickledObjectFilesystemIOManager(base_dir=base_dir), store, run.run_id,
                                      run.tags.get(PREDICTION_TAG))
        return ShadowLiveIOManager(base_dir, store, self.prefetch_cache(context.instance))

