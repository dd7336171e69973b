"""Pre-fetch and pre-allocation benchmark, measured apart from pre-execution.

One workflow, `etl` (`big`: a pandas DataFrame of `--mb` MB pickled; `gate_step`: critical, holds
the live run) then `consume` (`use_big`: critical, reads `big`; `use_index`: critical, needs the
`BenchIndex` WarmableResource). Both consume steps are critical: nothing is pre-executed, so any
difference comes from pre-fetch and pre-allocation alone. History is seeded with real runs, the
fingerprint fitted, then each round runs a real live instance held at `gate_step`, and either
(cold) no sensor tick, or (prepared) one real speculative sensor tick (`build_sensor_context` with
the repository), before the live `consume` run executes in process. Rounds alternate cold and
prepared, on two live stores:

- local: FilesystemIOManager layout on this machine's disk. The file `big` was just written, so a
  cold read comes from the page cache too: expect a ratio near 1 (the cache adds a sha256 check).
- remote (modelled): the same files, but every cold live read first waits `latency_s` (per request)
  plus size / `bandwidth_mb_s` (defaults 0.05 s and 100 MB/s, about one S3 GET stream), measured as
  real sleeps. The prefetch copy would pay the same wait, but in the sensor, ahead of the step; the
  copy itself reads local disk here (there is no remote to measure).

Reported: input-load seconds of `use_big` (timed in the IO manager) and step seconds of `use_index`
(a cold step builds a numpy index on disk, real compute; a warmed one loads it), medians over
rounds; ratios are prepared / cold (below 1 = faster). Last line with --json: one JSON object.
"""


import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

MODEL_LATENCY_S = 0.05
MODEL_BANDWIDTH_MB_S = 100.0
LOADS: dict[str, float] = {}           # run id -> seconds `use_big` spent loading its input


def _definitions(root: Path, url: str, gate: threading.Event, *, remote: bool, index_rows: int):
    import numpy as np
    import pandas as pd
    from dagster import Config, Definitions, asset, define_asset_job

    from shadow_dagster.dagster.critical import guard_assets
    from shadow_dagster.dagster.io_manager import ShadowIOManager, ShadowLiveIOManager, get_store
    from shadow_dagster import PrepareConfig, ShadowStorage, SpeculationConfig
    from shadow_dagster.dagster.shadow_job import shadow_job
    from shadow_dagster.dagster.speculative_sensor import build_speculative_sensor
    from shadow_dagster.dagster.warmup import WarmableResource
    from shadow_dagster.tags import CRITICAL_TAG

    class TimedLive(ShadowLiveIOManager):
        """The live IO manager, timing each input load; remote=True models a remote store's cold reads."""

        def load_from_path(self, context, path):
            t0 = time.perf_counter()
            value = super().load_from_path(context, path)
            if context.has_asset_key and context.asset_key.to_user_string() == "big":
                LOADS[context.step_context.run_id] = time.perf_counter() - t0
            return value

        def read_live(self, context, path):
            if remote:
                time.sleep(MODEL_LATENCY_S + os.path.getsize(path) / (MODEL_BANDWIDTH_MB_S * 1e6))
            return super().read_live(context, path)

    class BenchIOManager(ShadowIOManager):
        def create_io_manager(self, context):
            base_dir, shadow_dir, store_url = self.resolve(context)
            return TimedLive(base_dir, get_store(shadow_dir, store_url, base_dir), self.prefetch_cache(context.instance))

    class BenchIndex(WarmableResource):
        """A projection index over `rows` random points, built on first use (real compute) into `path`."""

        path: str
        rows: int

        def _build(self) -> None:
            rng = np.random.default_rng(7)
            points = rng.standard_normal((self.rows, 16))
            order = np.stack([np.argsort(points @ rng.standard_normal(16)) for _ in range(6)])
            tmp = self.path + ".tmp.npy"
            np.save(tmp, order.astype(np.int32))
            os.replace(tmp, self.path)

        def get(self):
            if not os.path.exists(self.path):
                self._build()
            return np.load(self.path)

        def warm_up(self) -> None:
            if not os.path.exists(self.path):
                self._build()

        def release(self) -> None:
            Path(self.path).unlink(missing_ok=True)

    class Size(Config):
        mb: float = 0.01

    @asset(code_version="1")
    def big(config: Size) -> pd.DataFrame:
        rows = max(1, int(config.mb * 1e6 / 80))
        return pd.DataFrame(np.random.default_rng(1).standard_normal((rows, 10)), columns=[f"c{i}" for i in range(10)])

    @asset(code_version="1", deps=[big])
    def gate_step() -> int:
        gate.wait(120)
        return 1

    @asset(code_version="1")
    def use_big(big: pd.DataFrame) -> int:
        return len(big)

    @asset(code_version="1")
    def use_index(index: BenchIndex) -> int:
        return int(index.get()[0, 0])

    @asset(code_version="1", op_tags={CRITICAL_TAG: "false"})
    def unrelated() -> int:          # the shadow job needs one non-critical asset; no workflow uses it
        return 0

    assets = guard_assets([big, gate_step, use_big, use_index, unrelated])
    sjob = shadow_job(assets)
    sensor = build_speculative_sensor(
        job=sjob, storage=ShadowStorage(signal_store_url=url, shadow_dir=str(root / "shadow"), output_store_url=url,
                                        fingerprint_dir=str(root / "fingerprints")),
        config=SpeculationConfig(launch_overhead_s=0.0, prepare=PrepareConfig(
            prefetch=True, prefetch_budget_bytes=4 << 30, prefetch_budget_s=60.0)))
    return Definitions(
        assets=assets, jobs=[define_asset_job("etl", selection=["big", "gate_step"]),
                             define_asset_job("consume", selection=["use_big", "use_index"]), sjob],
        sensors=[sensor],
        resources={"io_manager": BenchIOManager(base_dir=str(root / "live"), shadow_dir=str(root / "shadow"),
                                                store_url=url, prefetch_max_bytes=8 << 30),
                   "index": BenchIndex(path=str(root / "index.npy"), rows=index_rows)}), sensor


QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def _run(defs, instance, job: str, key: str, mb: float | None = None):
    from shadow_dagster.tags import WORKFLOW_TAG

    config: dict[str, Any] = dict(QUIET)
    if mb is not None:
        config["ops"] = {"big": {"config": {"mb": mb}}}
    return defs.resolve_job_def(job).execute_in_process(instance=instance, tags={WORKFLOW_TAG: key},
                                                        run_config=config, raise_on_error=True)


def _step_seconds(instance, run_id: str, step: str) -> float:
    (st,) = [s for s in instance.get_run_step_stats(run_id) if s.step_key == step]
    return st.end_time - st.start_time


def _round(defs, sensor, instance, gate, key: str, mb: float, prepared: bool, root: Path) -> dict:
    from dagster import build_sensor_context

    from shadow_dagster.dagster.io_manager import PREFETCH_HIT_META

    Path(root / "index.npy").unlink(missing_ok=True)          # every round starts cold
    shutil.rmtree(root / "prefetch", ignore_errors=True)
    gate.clear()
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(r=_run(defs, instance, "etl", key, mb)))
    thread.start()
    tick_s = 0.0
    try:
        deadline = time.monotonic() + 120
        while not any(s.step_key == "gate_step" for r in instance.get_runs(limit=3)
                      if r.tags.get("shadow_dagster/workflow") == key for s in instance.get_run_step_stats(r.run_id)):
            if time.monotonic() > deadline:
                raise RuntimeError("the live run never reached gate_step")
            time.sleep(0.05)
        time.sleep(0.2)                                         # older than the cache's min age
        if prepared:
            t0 = time.perf_counter()
            sensor.evaluate_tick(build_sensor_context(instance=instance, repository_def=defs.get_repository_def()))
            tick_s = time.perf_counter() - t0
    finally:
        gate.set()
        thread.join()
    result = _run(defs, instance, "consume", key)
    hits = [e for e in result.all_events if e.event_type_value == "LOADED_INPUT" and e.step_key == "use_big"
            and PREFETCH_HIT_META in e.event_specific_data.metadata]
    if prepared and not hits:
        raise RuntimeError("prepared round: use_big did not read through the prefetch cache")
    if not prepared and hits:
        raise RuntimeError("cold round read from the prefetch cache")
    return {"load_s": LOADS[result.run_id], "use_index_s": _step_seconds(instance, result.run_id, "use_index"),
            "use_big_step_s": _step_seconds(instance, result.run_id, "use_big"), "tick_s": tick_s}


def run(json_out: bool = False, *, mb: float = 150.0, reps: int = 2, index_rows: int = 1_500_000, echo=print) -> dict:
    from dagster import DagsterInstance

    from shadow_dagster.cli.common import echo_json
    from shadow_dagster.dagster.fingerprints import fingerprint_path
    from shadow_dagster.dagster.ingest import ingest
    from shadow_dagster_bench.home import write_instance_yaml
    from shadow_dagster.store.outcomes import read_outcomes
    from shadow_dagster.fingerprint import Fingerprint
    from shadow_dagster.signals.cases import cases_from_signals
    from shadow_dagster.store.signal_store import SignalStore

    if not 0 < mb <= 4000 or reps < 1 or index_rows < 1000:
        raise ValueError(f"need 0 < mb <= 4000, reps >= 1, index_rows >= 1000 (got {mb}, {reps}, {index_rows})")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="shadow-bench-prefetch-") as tmp:
        root = Path(tmp)
        home = root / "home"
        home.mkdir()
        write_instance_yaml(home)
        instance = DagsterInstance.from_config(str(home))
        url = f"sqlite:///{root / 'store.db'}"
        gate = threading.Event()
        gate.set()
        stores = {name: _definitions(root, url, gate, remote=name == "remote", index_rows=index_rows)
                  for name in ("local", "remote")}
        defs = stores["local"][0]
        echo(f"seeding history: 4 instances of etl -> consume ({root})")
        for i in range(4):
            _run(defs, instance, "etl", f"hist-{i}")
            _run(defs, instance, "consume", f"hist-{i}")
        signals = SignalStore(url)
        ingest(instance, signals, resolution_ms=1)
        cases = [c for c in cases_from_signals(signals.signals()) if c.workflow == "etl"]
        path = fingerprint_path("etl", root / "fingerprints")
        path.parent.mkdir(parents=True, exist_ok=True)
        Fingerprint.fit(cases, window_days=None).save(path)

        rounds: dict[tuple[str, str], list[dict]] = {}
        n = 0
        for rep in range(reps):
            for store in ("local", "remote"):
                order = ("cold", "prepared") if rep % 2 == 0 else ("prepared", "cold")
                for mode in order:
                    n += 1
                    d, sensor = stores[store]
                    r = _round(d, sensor, instance, gate, f"{store}-{mode}-{rep}", mb, mode == "prepared", root)
                    rounds.setdefault((store, mode), []).append(r)
                    echo(f"  {store:<6} {mode:<8} load big {r['load_s']:.3f} s   use_index step {r['use_index_s']:.3f} s"
                         + (f"   sensor tick {r['tick_s']:.2f} s" if r["tick_s"] else ""))
        outcomes = read_outcomes(signals)
        fetched = [o for o in outcomes if o.stage == "prefetch"]
        warmed = [o for o in outcomes if o.stage == "warmup" and o.resource == "index"]
        signals.dispose()
        instance.dispose()

    def med(store, mode, field):
        return statistics.median(r[field] for r in rounds[(store, mode)])

    size = fetched[0].nbytes if fetched else 0
    result = {
        "mb_requested": mb, "bytes": size, "reps": reps,
        "load_s": {f"{s}_{m}": round(med(s, m, "load_s"), 4) for s in ("local", "remote") for m in ("cold", "prepared")},
        "prefetch_ratio_local": round(med("local", "prepared", "load_s") / med("local", "cold", "load_s"), 3),
        "prefetch_ratio_remote": round(med("remote", "prepared", "load_s") / med("remote", "cold", "load_s"), 3),
        "use_index_s": {m: round(statistics.median(r["use_index_s"] for s in ("local", "remote")
                                                   for r in rounds[(s, m)]), 4) for m in ("cold", "prepared")},
        "prefetch_copy_s": round(statistics.median(o.seconds for o in fetched), 3) if fetched else None,
        "warmup_s": round(statistics.median(o.seconds for o in warmed), 3) if warmed else None,
        "sensor_tick_s": round(statistics.median(r["tick_s"] for s in ("local", "remote")
                                                 for r in rounds[(s, "prepared")]), 3),
        "remote_model": {"latency_s": MODEL_LATENCY_S, "bandwidth_mb_s": MODEL_BANDWIDTH_MB_S},
        "rounds": n,
    }
    result["warmup_ratio"] = round(result["use_index_s"]["prepared"] / result["use_index_s"]["cold"], 3)
    result["seconds"] = round(time.perf_counter() - started, 1)
    echo(f"input load of {size / 1e6:.0f} MB (median of {reps}): local cold {result['load_s']['local_cold']:.3f} s, "
         f"prefetched {result['load_s']['local_prepared']:.3f} s (ratio {result['prefetch_ratio_local']}); "
         f"remote-modelled cold {result['load_s']['remote_cold']:.3f} s, prefetched "
         f"{result['load_s']['remote_prepared']:.3f} s (ratio {result['prefetch_ratio_remote']})")
    echo(f"use_index step: cold {result['use_index_s']['cold']:.3f} s, warmed {result['use_index_s']['prepared']:.3f} s "
         f"(ratio {result['warmup_ratio']}); warm-up {result['warmup_s']} s and copy {result['prefetch_copy_s']} s "
         f"in the sensor tick ({result['sensor_tick_s']} s), off the live path")
    echo(f"remote model: {MODEL_LATENCY_S} s per request + size / {MODEL_BANDWIDTH_MB_S:.0f} MB/s, real sleeps "
         "(no remote store measured)")
    if json_out:
        echo_json(result)
    return result
