"""Load benchmark: N live workflow instances in flight at once, speculation off and on, in one run.

Workload. Each workflow instance is a chain of two real Dagster runs sharing the workflow tag and a
dynamic partition (the instance's key): `ingest` (`raw`, then the critical `publish`) and then one
branch job, `left` (`features_a`) or `right` (`features_b`), each a non-critical `@shadow_reusable`
asset. N runs of real CPU work at once cannot fit on a small host, and real workflows spend most of
their time waiting on other systems, so each step is modelled as a small real compute (a
calibrated sha256 loop, `work_s`) plus a wait on an external system:

- `publish` (critical: never pre-executed) waits for the external system's acknowledgement,
  `ack_s` seconds +-15 % per instance (seeded, the same in both modes);
- `features_a` / `features_b` wait `fetch_s` seconds for an external fetch (a shadow run waits too).

The waits are `time.sleep` calls standing for that external system; they are measured inside the
step (`publish` reports `ack_wait_s` metadata) and reported, so what remains of a live instance's
wall time beyond them is the live runs' own overhead (Dagster, SQLite, compute).

Method. Live runs execute in a few worker processes (`workers`), each running its instances in one
thread per instance with `execute_in_process` (Dagster's in-process executor), arrivals spread
evenly over `spread_s` seconds so that all N instances are in flight together before the first
acknowledgement arrives. Batches alternate speculation off and on on the very same instances
(branches, waits, arrival offsets): off, on, off (ABA) by default, so linear drift of the shared
machine cancels, and the two off batches give the noise floor (off vs off). A batch's instances have
their own keys, so nothing of one batch can be reused by another. In "on" batches the real
speculative sensor ticks in its own process like the daemon (every `minimum_interval_seconds` of the
sensor unless `tick_s` is given), with the policy's default caps, and each RunRequest is launched as
a real run in its own OS process (as a run launcher would), executing the shadow job. The
fingerprint is fitted on the first (off) batch: real past instances of the same workload.

The harness instance differs from the shipped dagster.yaml in two ways forced by running many runs
in threads of one process: no compute-log capture (it redirects the process's file descriptors per
step) and no instance settings (with any setting, Dagster calls `logging.config.dictConfig` at every
run's start, which deadlocks concurrent runs of one process); telemetry is disabled by environment
instead.

Figures: per instance the wall time off (mean of the off batches) and on, slowdown = on / off - 1
(p50, p95, max, count over 3 %); the same restricted to the critical steps (`raw` + `publish`
durations from Dagster's step stats), which speculation cannot shorten; the off-vs-off spread (noise);
sensor tick time (mean, p95, max) while all N instances were in flight; shadow runs launched, hits,
misses, cancels. Invariants: every live instance succeeded in every batch, live storage holds exactly
the live instances' outputs (no shadow write), every shadow run carries the shadow tags and executed
only non-critical steps.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from shadow_dagster_bench.speculation import ENV_DIR, ENV_ITERS, NONCRIT, QUIET, burn, calibrate

ENV_FETCH = "SHADOW_DAGSTER_LOAD_FETCH_S"
ACK_TAG = "shadow_dagster_bench/ack_s"        # live `ingest` runs: seconds the external ack takes
PARTITIONS = "load_instance"                  # one dynamic partition per workflow instance
CRITICAL_STEPS = ("raw", "publish")
DONE = "LOAD-WORKER-DONE "


# ------------------------------------------------------------------------------ code location
@functools.cache
def load_defs():
    """The load benchmark's code location (rebuilt in every process from the environment)."""
    from dagster import (
        Definitions,
        DynamicPartitionsDefinition,
        Output,
        asset,
        define_asset_job,
    )

    from shadow_dagster.dagster.critical import guard_assets
    from shadow_dagster.dagster.io_manager import ShadowIOManager
    from shadow_dagster.dagster.reuse import shadow_reusable
    from shadow_dagster.dagster.shadow_job import shadow_job
    from shadow_dagster.dagster.shadow_runner import shadow_runner_job

    root = Path(os.environ[ENV_DIR])
    iters = int(os.environ[ENV_ITERS])
    fetch_s = float(os.environ[ENV_FETCH])
    parts = DynamicPartitionsDefinition(name=PARTITIONS)

    @asset(code_version="1", partitions_def=parts)
    def raw(context) -> str:
        return burn(iters) + context.partition_key

    @asset(code_version="1", partitions_def=parts)
    def publish(context, raw: str):                 # critical: never pre-executed
        digest = burn(iters)
        start = time.perf_counter()
        time.sleep(float(context.run.tags.get(ACK_TAG, "0")))   # the external acknowledgement
        return Output(digest + raw, metadata={"ack_wait_s": time.perf_counter() - start})

    @asset(code_version="1", partitions_def=parts, op_tags=NONCRIT)
    @shadow_reusable
    def features_a(raw: str) -> str:
        time.sleep(fetch_s)                         # the external fetch
        return burn(iters) + raw

    @asset(code_version="1", partitions_def=parts, op_tags=NONCRIT)
    @shadow_reusable
    def features_b(raw: str) -> str:
        time.sleep(fetch_s)
        return burn(iters) + raw

    @asset(code_version="1")
    def warmup() -> str:                            # one run per worker before a batch starts
        return burn(iters)

    assets = guard_assets([raw, publish, features_a, features_b, warmup])
    jobs = [define_asset_job("ingest", selection=["raw", "publish"], partitions_def=parts),
            define_asset_job("left", selection=["features_a"], partitions_def=parts),
            define_asset_job("right", selection=["features_b"], partitions_def=parts),
            define_asset_job("warmup_job", selection=["warmup"]),
            shadow_job(assets), shadow_runner_job]                     # the product default: in-process executor
    url = f"sqlite:///{root / 'store.db'}"
    return Definitions(assets=assets, jobs=jobs, resources={"io_manager": ShadowIOManager(
        base_dir=str(root / "live"), shadow_dir=str(root / "shadow"), store_url=url)})


def make_load_sensor(chain_gap_s: float, max_load_per_core: float | None = None,
                     launches_per_tick: int | None | str = "auto"):
    """The speculative sensor with its defaults (policy caps included) plus the load guard, the
    tick budget (`max_tick_share` 0.25) and the launch cap (`max_launches_per_tick`: "auto", the
    default, is one launch per tick here, where shadow runs start on the live runs' host), stores
    under the bench directory; `chain_gap_s` is short because this workload starts its next job at once."""
    from shadow_dagster.dagster.speculative_sensor import build_speculative_sensor
    from shadow_dagster import PolicyConfig, ShadowStorage, SpeculationConfig

    root = Path(os.environ[ENV_DIR])
    url = f"sqlite:///{root / 'store.db'}"
    return build_speculative_sensor(
        storage=ShadowStorage(signal_store_url=url, shadow_dir=str(root / "shadow"), output_store_url=url),
        config=SpeculationConfig(chain_gap_s=chain_gap_s, policy=PolicyConfig(
            max_load_per_core=max_load_per_core, max_launches_per_tick=launches_per_tick),
            max_tick_share=0.25))   # many live runs on one host: the tick budget


def _load_home(work_s: float, fetch_s: float):
    """A temporary DAGSTER_HOME for many in-process runs per process (see the module docstring): its
    own dagster.yaml with consolidated event storage (the speculative sensor needs step events), no
    compute-log capture, no instance settings."""
    from shadow_dagster_bench.home import bench_home

    def write_yaml(home: Path) -> None:
        (home / "dagster.yaml").write_text(
            "event_log_storage:\n"
            "  module: dagster.core.storage.event_log\n"
            "  class: ConsolidatedSqliteEventLogStorage\n"
            f"  config: {{base_dir: {home / 'history'}}}\n"
            "compute_logs:\n"
            "  module: dagster.core.storage.noop_compute_log_manager\n"
            "  class: NoOpComputeLogManager\n")

    iters = calibrate(work_s)
    return bench_home(write_yaml, lambda root: {ENV_DIR: str(root), ENV_ITERS: str(iters),
                                                ENV_FETCH: repr(float(fetch_s)), "DAGSTER_DISABLE_TELEMETRY": "1"},
                      caches=[load_defs])


# ------------------------------------------------------------------------------ live instances
def _run_instance(instance, jobs: dict, spec: dict, start_at: float, out: list) -> None:
    """One live workflow instance: `ingest` then its branch job, timed from its arrival."""
    from shadow_dagster.tags import WORKFLOW_TAG

    time.sleep(max(0.0, start_at + spec["offset"] - time.time()))
    key = spec["key"]
    rec = {"key": key, "start": time.time(), "ok": False, "runs": [], "error": None}
    began = time.perf_counter()
    try:
        r1 = jobs["ingest"].execute_in_process(instance=instance, partition_key=key, run_config=QUIET,
                                               tags={WORKFLOW_TAG: key, ACK_TAG: f"{spec['ack_s']:.3f}"},
                                               raise_on_error=False)
        rec["runs"].append(r1.run_id)
        r2 = None
        if r1.success:
            r2 = jobs[spec["branch"]].execute_in_process(instance=instance, partition_key=key, run_config=QUIET,
                                                         tags={WORKFLOW_TAG: key}, raise_on_error=False)
            rec["runs"].append(r2.run_id)
        rec["wall"] = time.perf_counter() - began
        rec["ok"] = bool(r1.success and r2 is not None and r2.success)
        if rec["ok"]:
            meta = r1.asset_materializations_for_node("publish")[0].metadata
            rec["ack_wait_s"] = float(meta["ack_wait_s"].value)
    except Exception as exc:  # noqa: BLE001 - reported as a failed instance
        rec["wall"] = time.perf_counter() - began
        rec["error"] = repr(exc)[:300]
    rec["end"] = time.time()
    out.append(rec)


def _worker_main() -> int:
    """A live-run worker: read batch spec paths on stdin, run each batch's instances in threads."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        defs = load_defs()
        jobs = {n: defs.resolve_job_def(n) for n in ("ingest", "left", "right")}
        defs.resolve_job_def("warmup_job").execute_in_process(instance=instance, run_config=QUIET)
        print(DONE + "ready", flush=True)
        for line in sys.stdin:
            if not line.strip():
                break
            spec = json.loads(Path(line.strip()).read_text())
            out: list = []
            cpu0 = time.process_time()
            threads = [threading.Thread(target=_run_instance, args=(instance, jobs, s, spec["start_at"], out),
                                        daemon=True) for s in spec["instances"]]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            Path(spec["out"]).write_text(json.dumps({"instances": out, "cpu_s": time.process_time() - cpu0}))
            print(DONE + spec["out"], flush=True)
    return 0


class Workers:
    """`n` live-run worker processes, kept across batches (started and warmed up once)."""

    def __init__(self, n: int, tmp: Path):
        self.n, self.tmp, self.procs = n, tmp, []

    def __enter__(self):
        for _ in range(self.n):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "shadow_dagster_bench.load", "--worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=open(self.tmp / "worker.log", "a"), text=True))
        for p in self.procs:
            self._wait(p)
        return self

    @staticmethod
    def _wait(proc) -> str:
        for line in proc.stdout:
            if line.startswith(DONE):
                return line[len(DONE):].strip()
        raise RuntimeError(f"live-run worker exited with code {proc.wait()}")

    def run(self, instances: list[dict], lead_s: float = 1.0) -> list[dict]:
        """Run a batch: instance i goes to worker i % n; all share one start time."""
        start_at = time.time() + lead_s
        for w, proc in enumerate(self.procs):
            path = self.tmp / f"batch-{uuid.uuid4().hex}.json"
            path.write_text(json.dumps({"start_at": start_at, "instances": instances[w::self.n],
                                        "out": str(path.with_suffix(".out.json"))}))
            proc.stdin.write(f"{path}\n")
            proc.stdin.flush()
        results: list[dict] = []
        self.cpu_s = 0.0
        for proc in self.procs:
            doc = json.loads(Path(self._wait(proc)).read_text())
            results += doc["instances"]
            self.cpu_s += doc["cpu_s"]
        return results

    def __exit__(self, *exc):
        for p in self.procs:
            with contextlib.suppress(OSError):
                p.stdin.write("\n")
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


# ------------------------------------------------------------------------------ the sensor
class ShadowLauncher:
    """Launches each shadow RunRequest as a real run in its own OS process (like a run launcher)."""

    def __init__(self):
        self.procs, self.errors = [], []

    def launch(self, req) -> None:
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "shadow_dagster_bench.load", "--shadow-run", json.dumps(dict(req.tags)),
             json.dumps(req.run_config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))

    def join(self) -> None:
        for p in self.procs:
            _, err = p.communicate()
            if p.returncode:
                self.errors.append(err.strip().splitlines()[-1][:300] if err.strip() else f"exit {p.returncode}")


def _shadow_main(tags_json: str, run_config_json: str) -> int:
    from dagster import DagsterInstance, RunRequest

    from shadow_dagster.dagster.shadow_runner import RUNNER_JOB_NAME, execute_shadow_request

    request = RunRequest(job_name=RUNNER_JOB_NAME, tags=json.loads(tags_json), run_config=json.loads(run_config_json))
    with DagsterInstance.get() as instance:
        result = execute_shadow_request(load_defs(), request, instance, run_config=QUIET, raise_on_error=False)
        ok, run_id = result.success, result.run_id
        # what Dagster recorded for this run, kept here because the sensor may purge settled shadow runs
        run = instance.get_run_by_id(run_id)
        rec = instance.get_run_record_by_id(run_id)
        report = {"run_id": run_id, "ok": ok, "tags": dict(run.tags) if run else {},
                  "status": run.status.value if run else None,
                  "steps": [s.step_key for s in instance.get_run_step_stats(run_id)],
                  "start_time": rec.start_time if rec else None, "end_time": rec.end_time if rec else None}
        shadow_log = Path(os.environ[ENV_DIR]) / "shadow-runs"
        shadow_log.mkdir(exist_ok=True)
        (shadow_log / f"{run_id}.json").write_text(json.dumps(report))
    return 0 if ok else 1


def _sensor_main(stop_file: str, out_file: str, ready_file: str, tick_s: float, chain_gap_s: float,
                 max_load_per_core: float | None, launches_per_tick: int | None | str) -> int:
    """A daemon-like process: tick the sensor every `tick_s` (start to start) until `stop_file`
    exists, launch its requests (deduplicated by run key), then wait for the shadow runs and settle."""
    from dagster import DagsterInstance, build_sensor_context

    with DagsterInstance.get() as instance:
        sensor = make_load_sensor(chain_gap_s, max_load_per_core, launches_per_tick)
        repo = load_defs().get_repository_def()
        launcher, keys, ticks, errors, skips, cursor = ShadowLauncher(), set(), [], [], set(), None
        guarded = [0]
        ref = instance.get_ref()

        def context(cur):   # with the instance ref, as the daemon's (it resolves dynamic partitions)
            return build_sensor_context(instance=instance, instance_ref=ref, cursor=cur, repository_def=repo)

        def tick() -> None:
            nonlocal cursor
            started, begin, cpu = time.time(), time.perf_counter(), time.process_time()
            try:
                data = sensor.evaluate_tick(context(cursor))
            except Exception as exc:  # noqa: BLE001 - reported, the loop goes on
                errors.append(repr(exc)[:300])
                return
            ticks.append([started, time.perf_counter() - begin, len(data.run_requests or []),
                          time.process_time() - cpu])
            cursor = data.cursor
            if data.skip_message:
                skips.add(data.skip_message.split(";")[0].split(": load")[0])
                guarded[0] += data.skip_message.startswith("host saturated")
            for req in data.run_requests or []:
                if req.run_key not in keys:          # the daemon's run-key dedup
                    keys.add(req.run_key)
                    launcher.launch(req)

        tick()
        Path(ready_file).write_text("ready")
        while not os.path.exists(stop_file):
            next_at = ticks[-1][0] + tick_s if ticks else time.time() + tick_s
            while time.time() < next_at and not os.path.exists(stop_file):
                time.sleep(0.05)
            if not os.path.exists(stop_file):
                tick()
        cpu_s = time.process_time()
        launcher.join()
        import resource

        shadow_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        evaluated = 0
        for _ in range(20):   # settle outcomes once every shadow run ended: two ticks past the tick budget
            data = sensor.evaluate_tick(context(cursor))
            if (data.skip_message or "").startswith("tick budget"):
                time.sleep(0.5)
                continue
            cursor = data.cursor or cursor
            evaluated += 1
            if evaluated == 2:
                break
        Path(out_file).write_text(json.dumps({"ticks": ticks, "errors": errors[:5], "skips": sorted(skips)[:8],
                                              "launched": len(launcher.procs), "launch_errors": launcher.errors[:5],
                                              "guarded_ticks": guarded[0],
                                              "cpu_s": cpu_s, "shadow_cpu_s": shadow_cpu.ru_utime + shadow_cpu.ru_stime}))
    return 0


def parse_launch_cap(text: str) -> int | None | str:
    """`max_launches_per_tick` from its command-line spelling: a whole number, "none" or "auto"."""
    text = text.strip().lower()
    if text in ("none", "auto"):
        return None if text == "none" else text
    if not text.isdigit():
        raise ValueError(f"launches per tick: expected a whole number >= 1, 'none' or 'auto', got {text!r}")
    return int(text)


class SensorProcess:
    """The speculative sensor ticking in its own process for the duration of a `with` block."""

    def __init__(self, tmp: Path, tick_s: float, chain_gap_s: float, max_load_per_core: float | None,
                 launches_per_tick: int | None | str = "auto"):
        tag = uuid.uuid4().hex
        self.stop, self.out, self.ready = tmp / f"stop-{tag}", tmp / f"sensor-{tag}.json", tmp / f"ready-{tag}"
        self.tick_s, self.chain_gap_s, self.report = tick_s, chain_gap_s, {}
        self.max_load = "none" if max_load_per_core is None else str(max_load_per_core)
        self.per_tick = "none" if launches_per_tick is None else str(launches_per_tick)

    def __enter__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shadow_dagster_bench.load", "--sensor-loop", str(self.stop), str(self.out),
             str(self.ready), str(self.tick_s), str(self.chain_gap_s), self.max_load, self.per_tick],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while not self.ready.exists():               # its start-up is not charged to the live runs
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sensor process did not start: {self.proc.stderr.read()[-500:]}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.stop.write_text("stop")
        _, err = self.proc.communicate()
        if self.proc.returncode or not self.out.exists():
            raise RuntimeError(f"sensor process failed: {err.strip().splitlines()[-1:] if err else ''}")
        self.report = json.loads(self.out.read_text())


# ------------------------------------------------------------------------------ figures
def _host_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole host since boot (Linux /proc/stat), None elsewhere."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return (sum(fields) - idle) / hz, sum(fields) / hz


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _r(x, n: int = 4):
    return None if x is None else round(x, n)


def _pattern(batches: int) -> list[str]:
    """Speculation off first (the fingerprint is fitted on it), then on, symmetric so that linear drift
    cancels: 2 -> off on; 3 -> off on off; 4 -> off on on off; more repeat the ABBA block."""
    if batches == 3:
        return ["off", "on", "off"]
    base = ["off", "on", "on", "off"]
    return [base[i % 4] for i in range(batches)]


def _workload(live: int, ack_s: float, spread_s: float, p_left: float, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(live):
        out.append({"i": i, "branch": "left" if rng.random() < p_left else "right",
                    "ack_s": round(ack_s * rng.uniform(0.85, 1.15), 3),
                    "offset": round(spread_s * i / max(1, live), 3)})
    return out


def _step_durations(instance, run_ids: list[str]) -> dict[str, float]:
    out = {}
    for rid in run_ids:
        for st in instance.get_run_step_stats(rid):
            if st.start_time is not None and st.end_time is not None:
                out[st.step_key] = st.end_time - st.start_time
    return out


def _fit_fingerprint(instance, url: str, keys: list[str]):
    """Ingest the event log and fit the `ingest` workflow's fingerprint on these past instances."""
    from shadow_dagster.dagster.fingerprints import fingerprint_path
    from shadow_dagster.dagster.ingest import ingest
    from shadow_dagster.fingerprint import Fingerprint
    from shadow_dagster.signals.cases import cases_from_signals
    from shadow_dagster.store.signal_store import SignalStore

    store = SignalStore(url)
    ingest(instance, store, resolution_ms=1)
    wanted = set(keys)
    cases = [c for c in cases_from_signals(store.signals()) if c.workflow == "ingest" and c.case_id in wanted]
    fp = Fingerprint.fit(cases, window_days=None)
    path = fingerprint_path("ingest")
    path.parent.mkdir(parents=True, exist_ok=True)
    fp.save(path)
    return fp, len(cases)


def _shadow_figures(root: Path, url: str, prefix: str) -> dict:
    """Shadow runs serving the batch whose keys start with `prefix`: counts, outcomes, invariants
    (from each shadow run's own report, and outcome rows in the signal store)."""
    from shadow_dagster.store.outcomes import read_outcomes
    from shadow_dagster.tags import PREDICTED_AT_TAG
    from shadow_dagster.store.signal_store import SignalStore
    from shadow_dagster.tags import PARENT_TAG, PREDICTION_TAG, PROBABILITY_TAG, SHADOW_TAG

    outcomes = {r.prediction_id: r for r in read_outcomes(SignalStore(url)) if r.stage in ("hit", "miss")}
    reports = [json.loads(p.read_text()) for p in sorted((root / "shadow-runs").glob("*.json"))] \
        if (root / "shadow-runs").exists() else []
    runs = [r for r in reports if r["tags"].get(PARENT_TAG, "").startswith(prefix)]
    out = {"shadow_runs": len(runs), "hits": 0, "misses": 0, "unresolved": 0, "cancels": 0, "failed": 0,
           "untagged": 0, "critical_in_shadow": 0, "wasted_s": 0.0}
    for run in runs:
        rec = outcomes.get(run["tags"].get(PREDICTION_TAG))
        stage = rec.stage if rec else None
        out["hits" if stage == "hit" else "misses" if stage == "miss" else "unresolved"] += 1
        out["wasted_s"] += rec.seconds_wasted if rec and stage == "miss" else 0.0
        if stage == "miss":
            full = rec.reason or "?"
            reason = " ".join(full.split(";")[0].split()[:6])
            if rec.output_lead_s is not None:    # when it was ready, against the live step's start
                reason += f"; output ready {'before' if rec.output_lead_s >= 0 else 'after'} the live step started"
                out.setdefault("miss_output_lead_s", []).append(round(rec.output_lead_s, 2))
            elif "; the shadow run wrote no output" in full:
                reason += "; no shadow output"
            out.setdefault("miss_reasons", {})[reason] = out.setdefault("miss_reasons", {}).get(reason, 0) + 1
        try:   # where a shadow run's time went: launch (prediction to start), then the run itself
            predicted = float(run["tags"].get(PREDICTED_AT_TAG, ""))
            timing = {"launch_s": run["start_time"] - predicted, "run_s": run["end_time"] - run["start_time"]}
            for k, v in timing.items():
                out.setdefault(f"{stage or 'unresolved'}_{k}", []).append(round(v, 2))
        except (TypeError, ValueError):
            pass
        out["failed"] += not run["ok"] and run.get("status") != "CANCELED"
        out["cancels"] += run.get("status") == "CANCELED"
        tags = run["tags"]
        if not (tags.get(SHADOW_TAG) == "true" and tags.get(PREDICTION_TAG) and tags.get(PROBABILITY_TAG)):
            out["untagged"] += 1
        out["critical_in_shadow"] += bool(set(run["steps"]) & set(CRITICAL_STEPS))
    return out


def _live_files(root: Path) -> set[str]:
    live = root / "live"
    return {p.relative_to(live).as_posix() for p in live.rglob("*") if p.is_file()} if live.exists() else set()


def scaled_defaults(live: int) -> dict:
    """Waits for `live` instances: the figures of record use 100 (arrivals over 30 s, ack 45 s +-15 %,
    fetch 6 s, sensor every 5 s); fewer instances scale down so that a smoke run (10) takes a minute."""
    scale = min(1.0, live / 100)
    ack_s = max(6.0, 45.0 * scale)
    return {"spread_s": 30.0 * scale, "ack_s": ack_s, "fetch_s": max(1.5, 6.0 * scale),
            "chain_gap_s": max(3.0, 10.0 * scale), "tick_s": None if scale >= 1 else min(5.0, ack_s / 4)}


def run(json_out: bool = False, *, live: int = 100, batches: int = 3, ack_s: float | None = None,
        fetch_s: float | None = None, work_s: float = 0.02, spread_s: float | None = None,
        workers: int | None = None, tick_s: float | None = None, chain_gap_s: float | None = None,
        max_load_per_core: float | None = None, launches_per_tick: int | None | str = "auto",
        p_left: float = 0.9, seed: int = 7, echo=print) -> dict:
    """Run the load benchmark in a temporary DAGSTER_HOME; returns the figures (see module docstring).
    Waits left None follow `scaled_defaults(live)`; `max_load_per_core` is the policy's load guard,
    `launches_per_tick` its cap on launches per tick (None: no cap; "auto": the product default)."""
    from shadow_dagster.dagster.host import runs_on_live_host
    from shadow_dagster.speculation.policy import PolicyConfig

    cap_config = PolicyConfig(max_launches_per_tick=launches_per_tick)   # validates it
    if isinstance(live, bool) or not isinstance(live, int) or live < 2:
        raise ValueError(f"live must be an integer >= 2, got {live!r}")
    dflt = scaled_defaults(live)
    ack_s = dflt["ack_s"] if ack_s is None else ack_s
    fetch_s = dflt["fetch_s"] if fetch_s is None else fetch_s
    spread_s = dflt["spread_s"] if spread_s is None else spread_s
    chain_gap_s = dflt["chain_gap_s"] if chain_gap_s is None else chain_gap_s
    tick_s = dflt["tick_s"] if tick_s is None else tick_s
    if batches < 2:
        raise ValueError(f"batches must be at least 2 (off and on), got {batches!r}")
    for name, value in (("ack_s", ack_s), ("fetch_s", fetch_s), ("work_s", work_s), ("spread_s", spread_s),
                        ("chain_gap_s", chain_gap_s)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    if not spread_s < 0.85 * ack_s:
        raise ValueError("spread_s must be shorter than the shortest acknowledgement wait (0.85 * ack_s): "
                         "otherwise the instances are never all in flight together")
    workers = workers or max(1, min(4, math.ceil(live / 25)))
    say = (lambda *a: None) if json_out else echo
    began = time.perf_counter()
    pattern = _pattern(batches)
    work = _workload(live, ack_s, spread_s, p_left, seed)
    with _load_home(work_s, fetch_s) as (root, instance):
        from dagster import AssetKey

        from shadow_dagster.tags import REUSED_FROM

        url = f"sqlite:///{root / 'store.db'}"
        tick_s = tick_s or float(make_load_sensor(chain_gap_s, max_load_per_core,
                                                  launches_per_tick).minimum_interval_seconds)
        out: dict = {"live": live, "batches": pattern, "ack_s": ack_s, "fetch_s": fetch_s, "work_s": work_s,
                     "spread_s": spread_s, "workers": workers, "tick_interval_s": tick_s, "cores": os.cpu_count(),
                     "max_load_per_core": max_load_per_core, "max_launches_per_tick": launches_per_tick,
                     "launch_cap": cap_config.resolve_launch_cap(runs_on_live_host(instance)).launch_cap}
        per: dict[str, dict] = {}          # batch name -> key index -> record
        sensor_reports, shadow, expected_live, errors = {}, {}, set(), []
        fit_cases = None
        refused: dict[str, int] = {}
        with Workers(workers, root) as pool:
            for b, mode in enumerate(pattern):
                name = f"{mode}{b}"
                specs = [{**w, "key": f"{name}-{w['i']:03d}"} for w in work]
                instance.add_dynamic_partitions(PARTITIONS, [s["key"] for s in specs])
                if mode == "on" and fit_cases is None:
                    raise RuntimeError("the first batch must be off (the fingerprint is fitted on it)")
                say(f"batch {b + 1}/{len(pattern)}: speculation {mode}, {live} live instances ...")
                cpu = {}
                if mode == "on":
                    with SensorProcess(root, tick_s, chain_gap_s, max_load_per_core, launches_per_tick) as daemon:
                        host0, t0 = _host_cpu(), time.perf_counter()
                        results = pool.run(specs)
                        host1, t1 = _host_cpu(), time.perf_counter()
                    sensor_reports[name] = daemon.report
                    shadow[name] = _shadow_figures(root, url, f"{name}-")
                    cpu = {"sensor_cpu_s": _r(daemon.report["cpu_s"], 1),
                           "shadow_cpu_s": _r(daemon.report["shadow_cpu_s"], 1)}
                else:
                    host0, t0 = _host_cpu(), time.perf_counter()
                    results = pool.run(specs)
                    host1, t1 = _host_cpu(), time.perf_counter()
                cpu.update({"batch_s": _r(t1 - t0, 1), "live_cpu_s": _r(pool.cpu_s, 1)})
                with contextlib.suppress(AttributeError, OSError):
                    cpu["load_per_core_end"] = _r(os.getloadavg()[0] / (os.cpu_count() or 1), 2)
                if host0 and host1:
                    cpu["host_busy"] = _r((host1[0] - host0[0]) / max(1e-9, host1[1] - host0[1]), 3)
                out.setdefault("cpu", {})[name] = cpu
                by_key = {r["key"]: r for r in results}
                for s in specs:
                    r = by_key.get(s["key"], {"ok": False, "error": "no result", "runs": []})
                    if not r.get("ok"):
                        errors.append(f"{s['key']}: {r.get('error')}")
                        continue
                    r["steps"] = _step_durations(instance, r["runs"])
                    if mode == "on":   # why a live step did not take a shadow output (its reuse log lines)
                        for rid in r["runs"]:
                            for ev in instance.all_logs(rid):
                                msg = ev.user_message or ""
                                if "shadow reuse refused" in msg or "failed verification" in msg:
                                    why = msg.split(": ", 1)[-1][:160]
                                    refused[why] = refused.get(why, 0) + 1
                    asset = "features_a" if s["branch"] == "left" else "features_b"
                    mats = instance.fetch_materializations(
                        _partition_filter(AssetKey(asset), s["key"]), limit=1).records
                    meta = mats[0].asset_materialization.metadata if mats else {}
                    r["reused"] = REUSED_FROM in meta
                    expected_live |= {f"raw/{s['key']}", f"publish/{s['key']}", f"{asset}/{s['key']}"}
                per[name] = {s["i"]: by_key.get(s["key"], {}) for s in specs}
                if fit_cases is None:
                    fp, fit_cases = _fit_fingerprint(instance, url, [s["key"] for s in specs])
                    out["fingerprint"] = {"cases": fit_cases, "predictor": fp.predictor}
                say(f"  done: wall p50 {_r(_pct([r['wall'] for r in results], 0.5), 2)} s")
                if b < len(pattern) - 1:
                    time.sleep(chain_gap_s + 1)      # the batch leaves the sensor's live view
        live_files = _live_files(root)
        out.update(_summarise(per, pattern, work, sensor_reports, shadow, live, fetch_s))
        out["reuse_refused"] = refused   # reasons the live reuse check gave (log lines of live runs)
        out["errors"] = errors[:5]
        out["failed_instances"] = len(errors)
        out["shadow_live_writes"] = len(live_files - expected_live - {"warmup"})
        out["missing_live_outputs"] = len(expected_live - live_files)
    out["elapsed_s"] = round(time.perf_counter() - began, 1)
    if json_out:
        echo(json.dumps(out, sort_keys=True))
    else:
        for k in ("live", "tick_s_mean", "tick_s_p95", "tick_s_max", "shadow_runs_launched", "hits", "misses",
                  "cancels", "slowdown_p50", "slowdown_p95", "slowdown_max", "slowed_over_3pct",
                  "critical_slowdown_max", "noise_off_vs_off_max", "off_wall_s", "on_wall_s", "elapsed_s"):
            echo(f"{k:24} {out.get(k)}")
    return out


def _partition_filter(key, partition: str):
    from dagster import AssetRecordsFilter

    return AssetRecordsFilter(asset_key=key, asset_partitions=[partition])


def _summarise(per: dict, pattern: list[str], work: list[dict], sensor_reports: dict, shadow: dict,
               live: int, fetch_s: float) -> dict:
    names = [f"{m}{b}" for b, m in enumerate(pattern)]
    offs = [n for n in names if n.startswith("off")]
    ons = [n for n in names if n.startswith("on")]

    def mean_of(batch_names, i, fn):
        vals = [fn(per[n][i]) for n in batch_names if per[n].get(i, {}).get("ok")]
        return statistics.fmean(vals) if vals and len(vals) == len(batch_names) else None

    def crit(r):
        return sum(r["steps"].get(s, 0.0) for s in CRITICAL_STEPS)

    def overhead(r):  # wall time beyond the modelled waits (the fetch only counts when computed live)
        return r["wall"] - r.get("ack_wait_s", 0.0) - (0.0 if r.get("reused") else fetch_s)

    slow, crit_slow, over_off, over_on, off_walls, on_walls, reused_slow, noise = [], [], [], [], [], [], [], []
    rows: list[dict] = []
    for w in work:
        i = w["i"]
        off, on = mean_of(offs, i, lambda r: r["wall"]), mean_of(ons, i, lambda r: r["wall"])
        if off is None or on is None:
            continue
        off_walls.append(off)
        on_walls.append(on)
        slow.append(on / off - 1)
        c_off, c_on = mean_of(offs, i, crit), mean_of(ons, i, crit)
        crit_slow.append(c_on / c_off - 1)
        over_off.append(mean_of(offs, i, overhead))
        over_on.append(mean_of(ons, i, overhead))
        reused_any = any(per[n][i].get("reused") for n in ons)
        if not reused_any:
            reused_slow.append(on / off - 1)
        rows.append({"i": i, "branch": w["branch"], "ack_s": w["ack_s"], "off_s": _r(off, 3), "on_s": _r(on, 3),
                     "slowdown": _r(on / off - 1), "critical_slowdown": _r(c_on / c_off - 1), "reused": reused_any,
                     "steps": {n: {k: _r(v, 3) for k, v in per[n][i]["steps"].items()} for n in names}})
        if len(offs) >= 2:
            a, b = per[offs[0]][i]["wall"], per[offs[1]][i]["wall"]
            noise.append(abs(b / a - 1))
    ticks_full, ticks_all = [], []
    for n in ons:
        rep = sensor_reports.get(n, {})
        starts = [(r["start"], r["end"]) for r in per[n].values() if r.get("ok")]
        for t0, dur, *_ in rep.get("ticks", []):
            ticks_all.append(dur)
            if sum(1 for s, e in starts if s <= t0 <= e) >= live:
                ticks_full.append(dur)
    ticks = ticks_full or ticks_all
    launched = sum(r.get("launched", 0) for r in sensor_reports.values())
    guarded = sum(r.get("guarded_ticks", 0) for r in sensor_reports.values())
    tot = {k: sum(s.get(k, 0) for s in shadow.values()) for k in
           ("shadow_runs", "hits", "misses", "unresolved", "cancels", "failed", "untagged", "critical_in_shadow")}
    reused = sum(1 for n in ons for r in per[n].values() if r.get("reused"))

    def dist(vals):
        return {"p50": _r(_pct(vals, 0.5), 3), "p95": _r(_pct(vals, 0.95), 3), "max": _r(max(vals), 3) if vals else None,
                "mean": _r(statistics.fmean(vals), 3) if vals else None}

    return {
        "instances_compared": len(slow),
        "tick_s_mean": _r(statistics.fmean(ticks)) if ticks else None,
        "tick_s_p95": _r(_pct(ticks, 0.95)), "tick_s_max": _r(max(ticks)) if ticks else None,
        "ticks_with_all_live": len(ticks_full), "ticks": len(ticks_all), "ticks_guarded": guarded,
        "shadow_runs_launched": launched, "shadow_runs_recorded": tot["shadow_runs"],
        "hits": tot["hits"], "misses": tot["misses"], "unresolved": tot["unresolved"], "cancels": tot["cancels"],
        "miss_reasons": {k: v for s in shadow.values() for k, v in s.get("miss_reasons", {}).items()},
        "wasted_shadow_s": _r(sum(s.get("wasted_s", 0.0) for s in shadow.values()), 1),
        # seconds from prediction to shadow-run start, and of the run itself, for hits and misses
        "shadow_timing_s": {f"{st}_{k}": dist([x for s in shadow.values() for x in s.get(f"{st}_{k}", [])])
                            for st in ("hit", "miss") for k in ("launch_s", "run_s")},
        # misses the live step computed itself: seconds the output was ready before it started (< 0: after)
        "miss_output_lead_s": sorted(x for s in shadow.values() for x in s.get("miss_output_lead_s", [])),
        "shadow_failed": tot["failed"], "shadow_untagged": tot["untagged"],
        "critical_in_shadow": tot["critical_in_shadow"], "live_steps_reused": reused,
        "slowdown_p50": _r(_pct(slow, 0.5)), "slowdown_p95": _r(_pct(slow, 0.95)),
        "slowdown_max": _r(max(slow)) if slow else None,
        "slowed_over_3pct": sum(1 for s in slow if s > 0.03),
        "slowdown_max_not_reused": _r(max(reused_slow)) if reused_slow else None,
        "critical_slowdown_p50": _r(_pct(crit_slow, 0.5)), "critical_slowdown_p95": _r(_pct(crit_slow, 0.95)),
        "critical_slowdown_max": _r(max(crit_slow)) if crit_slow else None,
        "critical_slowed_over_3pct": sum(1 for s in crit_slow if s > 0.03),
        "noise_off_vs_off_p95": _r(_pct(noise, 0.95)), "noise_off_vs_off_max": _r(max(noise)) if noise else None,
        "off_wall_s": dist(off_walls), "on_wall_s": dist(on_walls),
        "overhead_off_s": dist([x for x in over_off if x is not None]),
        "overhead_on_s": dist([x for x in over_on if x is not None]),
        "per_instance": rows,
        "sensor_errors": [e for r in sensor_reports.values() for e in r.get("errors", []) + r.get("launch_errors", [])][:5],
        "sensor_skips": sorted({s for r in sensor_reports.values() for s in r.get("skips", [])})[:5],
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        sys.exit(_worker_main())
    if sys.argv[1:2] == ["--shadow-run"]:
        sys.exit(_shadow_main(sys.argv[2], sys.argv[3]))
    if sys.argv[1:2] == ["--sensor-loop"]:
        sys.exit(_sensor_main(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), float(sys.argv[6]),
                              None if sys.argv[7] == "none" else float(sys.argv[7]),
                              parse_launch_cap(sys.argv[8])))
    run(json_out="--json" in sys.argv, live=int(os.environ.get("BENCH_LIVE", 10)))
