"""Speculation benchmark: the same workload with speculation off, on, and with an oracle.

Workload. Each workflow instance is a chain of three real Dagster runs sharing a workflow key, as
jobs chained by schedules or run-status sensors run one after the other:
`ingest` (`raw`, then the critical `publish`: `PUBLISH_FACTOR` x `work_s`), then one branch job,
`left` (`features_a`) or `right` (`features_b`), then `report` (`quality`: `QUALITY_FACTOR` x
`work_s`). `features_*` (`work_s`) and `quality` are non-critical `@shadow_reusable` assets that
read only `raw`, so once `raw` exists both can be pre-executed side by side while `publish` runs.
What a step's work is (`compute`):
- "wait" (default): the step waits that long on the external system it stands for (a warehouse
  query, an API call; a `time.sleep` after a token sha256), as most steps of data pipelines do;
- "cpu": a sha256 loop calibrated once to this machine (no sleeps). On a 2-core host the shadow
  runs then take CPU from `publish`, and on/off cannot go below 1/2 (the work itself is halved
  at best).
Live runs use Dagster's multiprocess executor (a process per step) in every mode, started by
forkserver with Dagster and the code location preloaded (Dagster's `start_method: forkserver`
option), so process start-up does not hide what speculation does.

- off: the instance runs; nothing else happens.
- on: the real speculative sensor ticks every `tick_s` in its own process (as the daemon would) and
  submits its RunRequests through a code server and the instance's DefaultRunLauncher, so shadow
  runs are real run workers on the shadow job's default (in-process) executor, and rollback cancels
  them through the launcher. It predicts from a fingerprint fitted on `history` real past instances.
- oracle: shadow runs of the true path's two non-critical steps are submitted the same way as soon
  as `raw` exists: the best speculation can do on this workload with this machinery.
Modes are interleaved instance by instance (off, on, oracle for instance 0, then instance 1, ...)
so machine drift hits every mode alike; the sensor is paused outside its own instances.
The predictable workload takes `left` with probability 0.9; the adversarial one flips a fair coin.

Bound. A shadow run starts only once its inputs exist and a run worker is up (launch latency L),
and the live run never waits for it, so a step is saved only if its shadow run finishes before the
live run reaches it. With the two non-critical steps side by side, on >= max(P, F + L, Q + L) plus
the runs' own overhead, while off = P + F + Q plus the same overhead: below 1/2 when F + Q exceeds
P plus that overhead, and only if F and Q each fit before the live run needs them.

Figures: wall time per instance (p50, p95, mean) per mode; ratio = mean on / mean off; efficiency =
(off - on) / (off - oracle); hit rate; waste = shadow seconds of missed predictions / all shadow
seconds; adversarial slowdown = mean on / mean off - 1 on the adversarial workload; reuse-check
overhead per step (a live step's reuse check with no shadow output, timed inside the step);
sensor tick time with 100 live runs (runs registered as STARTED with no step yet, so each is
grouped, predicted and planned; no RunRequest results).
"""

from __future__ import annotations

from shadow_dagster_bench.home import write_instance_yaml
import functools
import hashlib
import json
import os
import statistics
import threading
import time
import uuid
from pathlib import Path

ENV_DIR = "SHADOW_DAGSTER_BENCH_DIR"
ENV_ITERS = "SHADOW_DAGSTER_BENCH_ITERS"
ENV_WORK_S = "SHADOW_DAGSTER_BENCH_WORK_S"
ENV_COMPUTE = "SHADOW_DAGSTER_BENCH_COMPUTE"
COMPUTES = ("wait", "cpu")
NONCRIT = {"shadow_dagster/critical": "false"}
PUBLISH_FACTOR = 1.5        # the critical step works 1.5 times as long as a branch step
QUALITY_FACTOR = 1.25       # the last job's quality check works 1.25 times as long as a branch step
LOCATION = "bench"
RUN_COORDINATOR = "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"


def burn(iters: int) -> str:
    """Sleep-free CPU work: `iters` chained sha256 digests."""
    h = b"shadow-dagster"
    for _ in range(iters):
        h = hashlib.sha256(h).digest()
    return h.hex()[:16]


def calibrate(work_s: float) -> int:
    n = 20000
    start = time.perf_counter()
    burn(n)
    rate = n / max(1e-6, time.perf_counter() - start)
    return max(1, int(rate * work_s))


def work(units: float) -> str:
    """A step's work: `units` x `work_s` seconds of it, as the benchmark's compute mode says: "cpu"
    burns a calibrated sha256 loop; "wait" waits that long on the external system the step stands
    for (a warehouse query, an API), measured and documented, after a token real digest."""
    if os.environ.get(ENV_COMPUTE, "cpu") == "cpu":
        return burn(int(units * int(os.environ[ENV_ITERS])))
    time.sleep(units * float(os.environ[ENV_WORK_S]))
    return burn(1000)


@functools.cache
def bench_defs():
    """The benchmark code location (rebuilt in every step process from the environment)."""
    from dagster import Definitions, MaterializeResult, asset, define_asset_job

    from shadow_dagster.dagster.critical import guard_assets
    from shadow_dagster.dagster.io_manager import ShadowIOManager
    from shadow_dagster.dagster.reuse import shadow_reusable
    from shadow_dagster.dagster.shadow_job import shadow_job
    from shadow_dagster.dagster.shadow_runner import shadow_runner_job

    root = Path(os.environ[ENV_DIR])

    @asset(code_version="1")
    def raw(context) -> str:
        return context.run.tags.get("shadow_dagster/workflow", "none")

    @asset(code_version="1")
    def publish(raw: str) -> str:                  # critical: never pre-executed
        return work(PUBLISH_FACTOR) + raw

    @asset(code_version="1", op_tags=NONCRIT)
    @shadow_reusable
    def features_a(raw: str) -> str:
        return work(1) + raw

    @asset(code_version="1", op_tags=NONCRIT)
    @shadow_reusable
    def features_b(raw: str) -> str:
        return work(1) + raw

    @asset(code_version="1", op_tags=NONCRIT)
    @shadow_reusable
    def quality(raw: str) -> str:                  # the chain's last job: checks on the raw data
        return work(QUALITY_FACTOR) + raw

    @asset(code_version="1", op_tags=NONCRIT)
    def reuse_probe(context, raw: str):
        """Times the reuse check a live @shadow_reusable step makes (provenance key + store lookup)."""
        from shadow_dagster.dagster.critical import current_step_context
        from shadow_dagster.dagster.reuse import try_reuse

        step = current_step_context()
        n = 20
        start = time.perf_counter()
        for _ in range(n):
            try_reuse(step, context.asset_key)
        return MaterializeResult(metadata={"seconds_per_check": (time.perf_counter() - start) / n})

    assets = guard_assets([raw, publish, features_a, features_b, quality, reuse_probe])
    jobs = [define_asset_job("ingest", selection=["raw", "publish"]),
            define_asset_job("left", selection=["features_a"]),
            define_asset_job("right", selection=["features_b"]),
            define_asset_job("report", selection=["quality"]),
            define_asset_job("probe", selection=["reuse_probe"]),
            shadow_job(assets), shadow_runner_job]   # the product's default: shadow steps run in the run worker
    url = f"sqlite:///{root / 'store.db'}"
    return Definitions(assets=assets, jobs=jobs, resources={"io_manager": ShadowIOManager(
        base_dir=str(root / "live"), shadow_dir=str(root / "shadow"), store_url=url)})


def ingest_job():
    return bench_defs().resolve_job_def("ingest")


def left_job():
    return bench_defs().resolve_job_def("left")


def right_job():
    return bench_defs().resolve_job_def("right")


def report_job():
    return bench_defs().resolve_job_def("report")


QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
PRELOAD = ["dagster", "pandas", "shadow_dagster_bench.speculation", "shadow_dagster.dagster.critical",
           "shadow_dagster.dagster.io_manager", "shadow_dagster.dagster.reuse",
           "shadow_dagster.dagster.speculative_sensor"]
LIVE_CONFIG = {**QUIET, "execution": {"config": {"multiprocess": {
    "start_method": {"forkserver": {"preload_modules": PRELOAD}}}}}}


def _execute(fn, instance, tags, asset_selection=None):
    from dagster import execute_job, reconstructable

    with execute_job(reconstructable(fn), instance=instance, tags=tags, run_config=LIVE_CONFIG,
                     asset_selection=asset_selection) as result:
        return result.success, result.run_id


def _stats(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "mean": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50": round(statistics.median(ordered), 3), "p95": round(p95, 3),
            "mean": round(statistics.fmean(ordered), 3)}


class Launcher:
    """Submits shadow runs as the daemon does: through a code server for the benchmark location and the
    instance's run coordinator and launcher (DefaultRunLauncher: a run worker process per run)."""

    def __init__(self, instance):
        self.instance, self.run_ids, self.errors = instance, [], []
        self._lock = threading.Lock()

    def __enter__(self):
        from shadow_dagster.dagster.compat import ModuleTarget, WorkspaceProcessContext

        self._ctx = WorkspaceProcessContext(self.instance, ModuleTarget(
            module_name="shadow_dagster_bench.location", attribute="defs", working_directory=None,
            location_name=LOCATION))
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)

    def launch(self, request):
        from shadow_dagster_bench.launch import submit_asset_run

        try:
            with self._lock:    # one submission at a time through the shared workspace
                run = submit_asset_run(self.instance, self._ctx.create_request_context(), LOCATION,
                                       request.job_name, None, request.tags,
                                       run_config={**request.run_config, **QUIET})
            self.run_ids.append(run.run_id)
        except Exception as exc:  # noqa: BLE001 - reported with the figures
            self.errors.append(repr(exc)[:300])

    def in_flight(self) -> int:
        from shadow_dagster.dagster.live_groups import IN_FLIGHT

        return sum(1 for rid in self.run_ids
                   if (r := self.instance.get_run_by_id(rid)) is not None and r.status in IN_FLIGHT)

    def wait_idle(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.in_flight() and time.monotonic() < deadline:
            time.sleep(0.2)


class SensorLoop:
    """Ticks the speculative sensor like the daemon would, launching its RunRequests."""

    def __init__(self, instance, sensor, repo, launcher, tick_s):
        self.instance, self.sensor, self.repo, self.launcher, self.tick_s = instance, sensor, repo, launcher, tick_s
        self.cursor, self.ticks, self.errors, self.keys = None, [], [], set()
        self.skips: list[str] = []

    def tick(self):
        from dagster import build_sensor_context

        start = time.perf_counter()
        data = self.sensor.evaluate_tick(build_sensor_context(instance=self.instance, cursor=self.cursor,
                                                              repository_def=self.repo))
        self.ticks.append(time.perf_counter() - start)
        self.cursor = data.cursor
        if data.skip_message:
            self.skips.append(data.skip_message)
        for req in data.run_requests or []:
            if req.run_key in self.keys:         # the daemon's run-key dedup
                continue
            self.keys.add(req.run_key)
            self.launcher.launch(req)


def make_sensor():
    """The speculative sensor as the benchmark configures it (stores under the bench directory)."""
    from shadow_dagster import ShadowStorage, SpeculationConfig
    from shadow_dagster.dagster.speculative_sensor import build_speculative_sensor

    root = Path(os.environ[ENV_DIR])
    url = f"sqlite:///{root / 'store.db'}"
    # horizon 3: from `raw` alone (before `publish` has started) the chain's last job is 3 steps ahead
    return build_speculative_sensor(
        storage=ShadowStorage(signal_store_url=url, shadow_dir=str(root / "shadow"), output_store_url=url),
        config=SpeculationConfig(chain_gap_s=30, divergence_slack=0, launch_overhead_s=0.5, ttl_s=600, horizon=3))


def _sensor_main(control_dir: str, tick_s: float) -> int:
    """A daemon-like process: tick the sensor while `control_dir/run` exists, until `control_dir/stop`;
    `control_dir/idle` says it is paused with none of its shadow runs in flight."""
    from dagster import DagsterInstance

    ctl = Path(control_dir)
    with DagsterInstance.get() as instance, Launcher(instance) as launcher:
        loop = SensorLoop(instance, make_sensor(), bench_defs().get_repository_def(), launcher, tick_s)
        (ctl / "ready").write_text("ready")
        while not (ctl / "stop").exists():
            running = (ctl / "run").exists()
            if running or launcher.in_flight():   # keep settling until its shadow runs are done
                (ctl / "idle").unlink(missing_ok=True)
                try:
                    loop.tick()
                except Exception as exc:  # noqa: BLE001 - reported
                    loop.errors.append(repr(exc)[:300])
            elif not (ctl / "idle").exists():
                (ctl / "idle").write_text("idle")
            time.sleep(tick_s)
        launcher.wait_idle()
        loop.tick()                      # settle outcomes of the last instances
        (ctl / "report.json").write_text(json.dumps({
            "ticks": loop.ticks, "errors": loop.errors[:5], "skips": sorted(set(loop.skips))[:8],
            "launched": len(launcher.run_ids), "launch_errors": launcher.errors[:5],
            "launch_s": json.loads(loop.cursor or "{}").get("launch_s")}))
    return 0


class SensorProcess:
    """Runs `_sensor_main` in its own process for the duration of a `with` block; `resume()` and
    `pause()` switch its ticking on and off between instances."""

    def __init__(self, tmp: Path, tick_s: float):
        self.ctl, self.tick_s = tmp / f"sensor-{uuid.uuid4().hex}", tick_s
        self.ctl.mkdir()
        self.report: dict = {}

    def _wait_for(self, name: str, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not (self.ctl / name).exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                _, err = self.proc.communicate(timeout=5) if self.proc.poll() is not None else ("", "timeout")
                raise RuntimeError(f"sensor process did not reach {name!r}: {str(err).strip().splitlines()[-1:]}")
            time.sleep(0.05)

    def __enter__(self):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-m", "shadow_dagster_bench.speculation", "--sensor-loop",
                                      str(self.ctl), str(self.tick_s)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._wait_for("ready")
        return self

    def resume(self) -> None:
        (self.ctl / "idle").unlink(missing_ok=True)
        (self.ctl / "run").write_text("run")

    def pause(self) -> None:
        """Stop ticking once the shadow runs it launched have finished and been settled."""
        (self.ctl / "run").unlink(missing_ok=True)
        self._wait_for("idle")

    def __exit__(self, *exc):
        (self.ctl / "stop").write_text("stop")
        _, err = self.proc.communicate()
        if self.proc.returncode or not (self.ctl / "report.json").exists():
            raise RuntimeError(f"sensor process failed: {err.strip().splitlines()[-1:] if err else ''}")
        self.report = json.loads((self.ctl / "report.json").read_text())


def _branches(n: int, p_left: float, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    return ["left" if rng.random() < p_left else "right" for _ in range(n)]


def _instance_run(instance, key: str, branch: str, before=None) -> float:
    from shadow_dagster.tags import WORKFLOW_TAG

    start = time.perf_counter()
    if before:
        before()
    ok1, _ = _execute(ingest_job, instance, {WORKFLOW_TAG: key})
    ok2, _ = _execute(left_job if branch == "left" else right_job, instance, {WORKFLOW_TAG: key})
    ok3, _ = _execute(report_job, instance, {WORKFLOW_TAG: key})
    if not (ok1 and ok2 and ok3):
        raise RuntimeError(f"benchmark instance {key} failed")
    return time.perf_counter() - start


def _history_instance(key: str, branch: str) -> None:
    """One real past instance (in-process executor, same work as live), in a pool worker."""
    from dagster import DagsterInstance

    from shadow_dagster.tags import WORKFLOW_TAG

    defs = bench_defs()
    with DagsterInstance.get() as instance:
        for job in ("ingest", branch, "report"):
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance, tags={WORKFLOW_TAG: key}, run_config=QUIET, raise_on_error=False)
            if not result.success:
                raise RuntimeError(f"history instance {key}: job {job} failed")


def _seed_history(instance, name: str, branches: list[str], url: str):
    """Real past instances, then the fingerprint fitted on them. They run side by side in a few
    worker processes (waits overlap; CPU work runs two at a time, one per core)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from shadow_dagster.dagster.fingerprints import fingerprint_path
    from shadow_dagster.dagster.ingest import ingest
    from shadow_dagster.fingerprint import Fingerprint
    from shadow_dagster.signals.cases import cases_from_signals
    from shadow_dagster.store.signal_store import SignalStore

    workers = 2 if os.environ.get(ENV_COMPUTE, "cpu") == "cpu" else 6
    with ProcessPoolExecutor(max_workers=min(workers, len(branches)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        for fut in [pool.submit(_history_instance, f"{name}-hist-{i}", b) for i, b in enumerate(branches)]:
            fut.result()
    store = SignalStore(url)
    ingest(instance, store, resolution_ms=1)
    cases = [c for c in cases_from_signals(store.signals())
             if c.workflow == "ingest" and c.case_id.startswith(f"{name}-hist-")]
    store.dispose()
    fp = Fingerprint.fit(cases, window_days=None)
    path = fingerprint_path("ingest")
    path.parent.mkdir(parents=True, exist_ok=True)
    fp.save(path)
    return fp


def _mode_outcomes(instance, url: str, prefix: str) -> dict:
    """Hit rate and waste share of the shadow runs serving instances whose key starts with `prefix`,
    from the outcome rows (settled runs are purged from Dagster; their "purged" row keeps the run's
    seconds) and, for runs not purged, their run records."""
    from dagster import RunsFilter

    from shadow_dagster.store.outcomes import read_outcomes
    from shadow_dagster.store.signal_store import SignalStore
    from shadow_dagster.tags import PARENT_TAG, PREDICTION_TAG, SHADOW_TAG

    store = SignalStore(url)
    rows = [r for r in read_outcomes(store) if (r.workflow_key or "").startswith(prefix)]
    store.dispose()
    stage = {r.prediction_id: r.stage for r in rows if r.stage in ("hit", "miss")}
    seconds = {r.prediction_id: r.seconds for r in rows if r.stage == "purged"}
    for rec in instance.get_run_records(filters=RunsFilter(tags={SHADOW_TAG: "true"})):
        run = rec.dagster_run
        if run.tags.get(PARENT_TAG, "").startswith(prefix) and rec.start_time:
            seconds.setdefault(run.tags.get(PREDICTION_TAG), max(0.0, (rec.end_time or time.time()) - rec.start_time))
    total = sum(seconds.get(pid, 0.0) for pid in stage)
    wasted = sum(seconds.get(pid, 0.0) for pid, st in stage.items() if st == "miss")
    hits = sum(st == "hit" for st in stage.values())
    misses = len(stage) - hits
    return {"shadow_runs": len(stage), "hits": hits, "misses": misses,
            "hit_rate": round(hits / len(stage), 4) if stage else None,
            "waste": round(wasted / total, 4) if total else 0.0, "shadow_seconds": round(total, 3),
            "miss_reasons": sorted({r.reason for r in rows if r.stage == "miss" and r.reason})[:5]}


def _oracle_before(instance, launcher, key: str, branch: str):
    from shadow_dagster.tags import PARENT_TAG, PROBABILITY_TAG, WORKFLOW_TAG

    assets = ("features_a" if branch == "left" else "features_b", "quality")

    def go():
        # the oracle knows the path, but a shadow run still needs `raw`: launch once it exists, one
        # shadow run per step of the path, as the sensor does
        def wait_then_launch():
            from shadow_dagster.dagster.shadow_runner import shadow_request

            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                runs = [r for r in instance.get_runs() if r.tags.get(WORKFLOW_TAG) == key]
                if runs and any(s.step_key == "raw" and s.status and s.status.value == "SUCCESS"
                                for s in instance.get_run_step_stats(runs[0].run_id)):
                    for asset in assets:
                        tags = {PARENT_TAG: key, PROBABILITY_TAG: "1.0", WORKFLOW_TAG: f"shadow:oracle-{key}"}
                        launcher.launch(shadow_request([asset], prediction_id=f"oracle-{key}-{asset}", tags=tags))
                    return
                time.sleep(0.05)

        threading.Thread(target=wait_then_launch, daemon=True).start()

    return go


def _reuse_overhead(instance, repeats: int = 3) -> float:
    """Seconds one reuse check costs inside a real live step (no matching shadow output: the miss
    path, which every live step pays), median over `repeats` runs of 20 checks each."""
    job = bench_defs().resolve_job_def("probe")
    values = []
    for _ in range(repeats):
        r = job.execute_in_process(instance=instance, run_config=QUIET)
        meta = r.asset_materializations_for_node("reuse_probe")[0].metadata
        values.append(float(meta["seconds_per_check"].value))
    return statistics.median(values)


def _tick_live(instance, sensor, repo, n: int, repeats: int = 3) -> float:
    """Median time of one speculative-sensor tick with `n` live workflow instances in flight."""
    from dagster import DagsterRun, DagsterRunStatus, build_sensor_context

    from shadow_dagster.tags import WORKFLOW_TAG

    ids = []
    for i in range(n):
        run = DagsterRun(job_name="ingest", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED,
                         tags={WORKFLOW_TAG: f"load-{i}"})
        instance.add_run(run)
        ids.append(run.run_id)
    times = []
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            sensor.evaluate_tick(build_sensor_context(instance=instance, repository_def=repo))
            times.append(time.perf_counter() - start)
    finally:
        for rid in ids:
            instance.delete_run(rid)
    return statistics.median(times)


def _bench_home(work_s: float, compute: str = "cpu"):
    """A temporary DAGSTER_HOME (consolidated event storage) with the benchmark's environment set."""
    from shadow_dagster_bench.home import bench_home

    if compute not in COMPUTES:
        raise ValueError(f"compute must be one of {COMPUTES}, got {compute!r}")
    iters = calibrate(work_s) if compute == "cpu" else 1
    return bench_home(lambda home: write_instance_yaml(home, RUN_COORDINATOR),   # submitted runs launch at once
                      lambda root: {ENV_DIR: str(root), ENV_ITERS: str(iters), ENV_WORK_S: repr(work_s),
                                    ENV_COMPUTE: compute}, caches=[bench_defs])


def tick_curve(ns=(10, 100, 1000), *, history: int = 12, work_s: float = 0.05, seed: int = 7,
               json_out: bool = False, echo=print) -> dict:
    """The speculative sensor's tick time as live instances grow (fingerprint fitted on real runs)."""
    with _bench_home(work_s) as (root, instance):
        _seed_history(instance, "curve", _branches(history, 0.9, seed + 1), f"sqlite:///{root / 'store.db'}")
        repo, sensor = bench_defs().get_repository_def(), make_sensor()
        out = {"history": history, "cores": os.cpu_count(), "tick_s": {}}
        for n in ns:
            out["tick_s"][str(n)] = round(_tick_live(instance, sensor, repo, n), 4)
            if not json_out:
                echo(f"  {n:>6} live instances: tick {out['tick_s'][str(n)]} s")
    if json_out:
        echo(json.dumps(out, sort_keys=True))
    return out


def run(json_out: bool = False, *, instances: int = 8, history: int = 12, work_s: float = 2.0,
        tick_s: float = 0.5, seed: int = 7, compute: str = "wait", echo=print) -> dict:
    """Run the whole benchmark in a temporary DAGSTER_HOME; returns the figures."""
    if instances < 2 or history < 2:
        raise ValueError("instances and history must each be at least 2")
    if not work_s > 0:
        raise ValueError(f"work_s must be positive, got {work_s!r}")
    if not tick_s > 0:
        raise ValueError(f"tick_s must be positive, got {tick_s!r}")
    say = (lambda *a: None) if json_out else echo
    with _bench_home(work_s, compute) as (root, instance):
        url = f"sqlite:///{root / 'store.db'}"
        repo = bench_defs().get_repository_def()
        sensor = make_sensor()
        out: dict = {"instances": instances, "history": history, "work_s": work_s, "tick_s": tick_s,
                     "publish_factor": PUBLISH_FACTOR, "quality_factor": QUALITY_FACTOR,
                     "compute": compute, "cores": os.cpu_count()}
        for workload, p_left in (("predictable", 0.9), ("adversarial", 0.5)):
            say(f"{workload}: seeding {history} past instances and fitting the fingerprint ...")
            fp = _seed_history(instance, workload, _branches(history, p_left, seed + 1), url)
            out.setdefault("fingerprint", {})[workload] = fp.predictor
            branches = _branches(instances, p_left, seed)
            modes = ("off", "on", "oracle") if workload == "predictable" else ("off", "on")
            walls: dict[str, list[float]] = {m: [] for m in modes}
            with SensorProcess(root, tick_s) as daemon, Launcher(instance) as oracle:
                _instance_run(instance, f"{workload}-warmup", "left")   # forkserver and caches warm for all
                for i, b in enumerate(branches):
                    order = modes if i % 2 == 0 else tuple(reversed(modes))
                    for mode in order:
                        key = f"{workload}-{mode}-{i}"
                        if mode == "on":
                            daemon.resume()
                            walls[mode].append(_instance_run(instance, key, b))
                            daemon.pause()
                        elif mode == "oracle":
                            walls[mode].append(_instance_run(instance, key, b, _oracle_before(instance, oracle, key, b)))
                            oracle.wait_idle()
                        else:
                            walls[mode].append(_instance_run(instance, key, b))
                    say(f"  instance {i} ({b}): " + ", ".join(f"{m} {walls[m][-1]:.2f}s" for m in modes))
                out.setdefault("launch_errors", []).extend(oracle.errors[:3])
            rep = daemon.report
            out.setdefault("sensor_errors", []).extend(rep["errors"][:3] + rep["launch_errors"][:3])
            out.setdefault("sensor_skips", {})[workload] = rep["skips"]
            out.setdefault("launch_latency_s", {})[workload] = rep.get("launch_s")
            out.setdefault("tick_s_mean", {})[workload] = round(statistics.fmean(rep["ticks"]), 4) if rep["ticks"] else None
            res = out.setdefault(workload, {})
            for mode in modes:
                res[mode] = {"wall": _stats(walls[mode])}
            res["on"]["shadow_launched"] = rep["launched"]
            res["on"].update(_mode_outcomes(instance, url, f"{workload}-on-"))
            if "oracle" in res:
                res["oracle"]["shadow_launched"] = len(oracle.run_ids)
        pred, adv = out["predictable"], out["adversarial"]
        off, on, oracle_wall = (pred[m]["wall"]["mean"] for m in ("off", "on", "oracle"))
        out["off_wall_s"], out["on_wall_s"], out["oracle_wall_s"] = pred["off"]["wall"], pred["on"]["wall"], pred["oracle"]["wall"]
        out["ratio"] = round(on / off, 4)
        out["oracle_ratio"] = round(oracle_wall / off, 4)
        out["efficiency"] = round((off - on) / (off - oracle_wall), 4) if off - oracle_wall > 1e-9 else None
        out["hit_rate"] = pred["on"]["hit_rate"]
        out["waste"] = pred["on"]["waste"]
        out["adversarial_waste"] = adv["on"]["waste"]
        out["adversarial_slowdown"] = round(adv["on"]["wall"]["mean"] / adv["off"]["wall"]["mean"] - 1, 4)
        say("measuring the reuse check and a tick with 100 live runs ...")
        out["reuse_overhead_s"] = round(_reuse_overhead(instance), 5)
        out["tick_s_100_live"] = round(_tick_live(instance, sensor, repo, 100), 4)
        out["targets_met"] = {"ratio<=0.5": out["ratio"] <= 0.5,
                              "efficiency>=0.8": (out["efficiency"] or 0) >= 0.8,
                              "waste<=0.10": out["waste"] <= 0.10,
                              "adversarial_slowdown<=0.03": out["adversarial_slowdown"] <= 0.03}
    if json_out:
        echo(json.dumps(out, sort_keys=True))
    else:
        for k in ("ratio", "oracle_ratio", "efficiency", "hit_rate", "waste", "adversarial_waste",
                  "adversarial_slowdown", "reuse_overhead_s", "tick_s_100_live"):
            echo(f"{k:24} {out[k]}")
    return out


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--sensor-loop"]:
        sys.exit(_sensor_main(sys.argv[2], float(sys.argv[3])))
    run(json_out="--json" in sys.argv, instances=int(os.environ.get("BENCH_INSTANCES", 8)))
