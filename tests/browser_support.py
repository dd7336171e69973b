"""Helpers of the browser test: seed a demo DAGSTER_HOME for real, serve it with `dagster dev`.

`seed(home)` builds, with real runs of the example code location, everything a newcomer should
see in the UI: a short history, its signals, the refitted history assets (fingerprint metadata),
a live workflow instance for today, a shadow run that the speculative sensor launched for it, and
the live run that reused the shadow output. It returns what the browser test asserts, read back
from the instance (never hard-coded).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading

from shadow_dagster.dagster.shadow_runner import execute_shadow_request
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shadow_dagster.example.resources import ExternalSystem

ROOT = Path(__file__).resolve().parents[1]
SCALE = "0.02"                      # fast example scale (SHADOW_DAGSTER_EXAMPLE_SCALE)
HISTORY_DAYS = 10                   # >= 10 instances: the fingerprint reports held-out accuracy
CHROMIUM = os.environ.get("SHADOW_DAGSTER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@dataclass
class Seeded:
    home: Path
    workflow: str                   # the fingerprinted workflow (first job of the chain)
    instances: int                  # workflow instances it learned from
    predictor: str                  # the fingerprint's chosen predictor, from the asset metadata
    top1: float                     # its held-out top-1 accuracy, from the asset metadata
    shadow_run_id: str              # the shadow run whose output the live run reused
    shadow_run_ids: list
    shadow_tags: dict
    shadow_job: str
    live_partition: str
    reused: dict = field(default_factory=dict)   # asset name -> shadow run id it reused


def seed(home: Path, today: dt.date | None = None) -> Seeded:
    """Fill `home` (an empty DAGSTER_HOME, already in os.environ) with real runs; see module doc."""
    from dagster import AssetKey, DagsterInstance, build_sensor_context

    from shadow_dagster.dagster.ingest import ingest
    from shadow_dagster.dagster.speculative_sensor import SHADOW_JOB_NAME, SPECULATIVE_SENSOR_NAME
    from shadow_dagster.example.chain import chain_request
    from shadow_dagster.example.definitions import build_definitions
    from shadow_dagster.example.resources import FAST_SCALE
    from shadow_dagster.example.simulate import simulate
    from shadow_dagster.store.engine import default_url
    from shadow_dagster.store.signal_store import SignalStore
    from shadow_dagster.tags import PARENT_TAG, PREDICTION_TAG, REUSED_FROM, SHADOW_TAG, WORKFLOW_TAG

    assert os.environ.get("DAGSTER_HOME") == str(home)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    today = today or dt.date.today() - dt.timedelta(days=1)     # the newest daily partition
    # the code location's definitions at the fast scale: the speculative sensor and its shadow job
    # come from shadow_definitions(pipeline); at this scale a launch costs more than 1 s of
    # overhead would allow, so the fixture sets it to 0
    spec_defs = defs = build_definitions(scale=FAST_SCALE, speculation={"launch_overhead_s": 0.0})
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    sensor = defs.resolve_sensor_def(SPECULATIVE_SENSOR_NAME)
    sjob = defs.resolve_job_def(SHADOW_JOB_NAME)
    repo = spec_defs.get_repository_def()

    with DagsterInstance.get() as instance:
        # history, signals, refit (the fingerprint's metadata is what the UI shows)
        simulate(instance, days=HISTORY_DAYS, runs_per_day=1, fast=False, end=today - dt.timedelta(days=1),
                 defs=defs)
        # 1 ms resolution: at the fast scale a run lasts about a second, and 1 s quantisation
        # can give the next job of a chain the same start time as the first one
        store = SignalStore(default_url(str(home)))
        while ingest(instance, store, resolution_ms=1).backlog_left:
            pass
        refit = defs.resolve_job_def("shadow_dagster_refit").execute_in_process(instance=instance, run_config=quiet)
        assert refit.success
        meta = instance.get_latest_materialization_event(
            AssetKey("workflow_fingerprint")).asset_materialization.metadata
        rows = [r.data for r in meta["accuracy"].value.records]
        assert [r["workflow"] for r in rows] == ["ingest_job"], meta["accuracy_md"].value
        row = rows[0]
        workflow = row["workflow"]
        assert row["fingerprint_top1"] is not None, meta["accuracy_md"].value

        # today's live instance, held at its critical warehouse load (a slow external system) so
        # that it is in flight when the speculative sensor ticks, as a real slow load would be
        partition = today.isoformat()
        key = f"daily_pipeline:{partition}#1"
        WAREHOUSE_GATE.clear()
        live: dict = {}
        thread = threading.Thread(target=lambda: live.update(result=defs.resolve_job_def("ingest_job").execute_in_process(
            instance=instance, partition_key=partition, tags={WORKFLOW_TAG: key},
            resources={"external": SlowWarehouse()}, run_config=quiet)))
        thread.start()
        try:
            _wait_for_warehouse_step(instance, key)
            tick = _tick_until_launch(sensor, instance, repo)
            shadow_ids = []
            for request in tick.run_requests:   # launched as the daemon would: the request's tags and selection
                shadow = execute_shadow_request(spec_defs, request, instance, run_config=quiet)
                assert shadow.success
                shadow_ids.append(shadow.run_id)
        finally:
            WAREHOUSE_GATE.set()
            thread.join()
        assert live["result"].success
        first = live["result"]
        reused = _reused(live["result"], REUSED_FROM)

        # the live chain continues: train_job reuses the shadow output(s), then notify_job
        run = instance.get_run_by_id(first.run_id)
        while (request := chain_request(run)) is not None:
            result = defs.resolve_job_def(request.job_name).execute_in_process(
                instance=instance, partition_key=request.partition_key, tags=dict(request.tags),
                run_config=quiet)
            reused.update(_reused(result, REUSED_FROM))
            run = instance.get_run_by_id(result.run_id)
        sensor.evaluate_tick(build_sensor_context(instance=instance, repository_def=repo,
                                                  cursor=tick.cursor))     # settles the hit
        assert reused and set(reused.values()) <= set(shadow_ids), (reused, shadow_ids)
        # "the" shadow run of the screenshots: the one whose output the live run reused
        shadow_run = instance.get_run_by_id(sorted(reused.items())[0][1])
        assert shadow_run is not None, "a shadow run whose output was reused is a hit, kept by purge='misses'"
        from shadow_dagster.dagster.rollback import read_outcomes

        stages = {o.stage for o in read_outcomes(SignalStore(default_url())) if o.shadow_run_id == shadow_run.run_id}
        assert "hit" in stages and "miss" not in stages, stages
        tags = dict(shadow_run.tags)
        assert tags[SHADOW_TAG] == "true" and tags[PARENT_TAG] and tags[PREDICTION_TAG]
    return Seeded(home=home, workflow=workflow, instances=int(row["instances"]), predictor=str(row["predictor"]),
                  top1=float(row["fingerprint_top1"]), shadow_run_id=shadow_run.run_id, shadow_tags=tags,
                  shadow_run_ids=shadow_ids,
                  shadow_job=shadow_run.job_name,
                  live_partition=partition, reused=reused)


WAREHOUSE_GATE = threading.Event()
WAREHOUSE_GATE.set()


class SlowWarehouse(ExternalSystem):
    """The example's external system, whose writes wait until WAREHOUSE_GATE opens (a slow load)."""

    def write_text(self, instance, relative: str, text: str) -> Path:
        if not WAREHOUSE_GATE.wait(120):
            raise TimeoutError("the warehouse gate never opened")
        return super().write_text(instance, relative, text)


def _wait_for_warehouse_step(instance, workflow_key: str, timeout_s: float = 120.0) -> None:
    from dagster import RunsFilter

    from shadow_dagster.tags import WORKFLOW_TAG

    deadline = time.monotonic() + timeout_s            # a bound on waiting, not a timed assertion
    while time.monotonic() < deadline:
        for run in instance.get_runs(filters=RunsFilter(tags={WORKFLOW_TAG: workflow_key})):
            if any(s.step_key.startswith("warehouse_") for s in instance.get_run_step_stats(run.run_id)):
                return
        time.sleep(0.1)
    raise AssertionError(f"the live run of {workflow_key} never reached its warehouse load")


def _tick_until_launch(sensor, instance, repo, timeout_s: float = 60.0):
    """Tick the speculative sensor (as the daemon would, every half second) until it launches."""
    from dagster import build_sensor_context

    deadline, cursor, messages = time.monotonic() + timeout_s, None, []
    while time.monotonic() < deadline:
        tick = sensor.evaluate_tick(build_sensor_context(instance=instance, repository_def=repo, cursor=cursor))
        if tick.run_requests:
            return tick
        cursor = tick.cursor
        messages.append(tick.skip_message)
        time.sleep(0.5)
    raise AssertionError(f"the speculative sensor launched nothing: {messages[-1:]}")


def _reused(result, reused_key: str) -> dict[str, str]:
    """asset -> shadow run id, for every materialization of `result` that reused a shadow output."""
    out = {}
    for event in result.get_asset_materialization_events():
        m = event.materialization
        if reused_key in m.metadata:
            out[m.asset_key.to_user_string()] = m.metadata[reused_key].value
    return out


# ---------------------------------------------------------------------------------- dagster dev
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DagsterDev:
    """`dagster dev -w workspace.yaml` from the repository root, in its own process group."""

    def __init__(self, home: Path, log: Path, timeout_s: float = 120.0):
        self.port, self.log_path = free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DAGSTER_HOME": str(home), "SHADOW_DAGSTER_EXAMPLE_SCALE": SCALE}
        dagster = Path(sys.executable).parent / "dagster"
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s          # a bound on waiting, not a timed assertion
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/server_info", timeout=2) as response:
                    if b"dagster_webserver_version" in response.read():
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"dagster dev did not answer /server_info:\n{self.log()[-3000:]}")
            time.sleep(0.5)

    def graphql(self, query: str) -> dict:
        import json

        request = urllib.request.Request(self.url + "/graphql", data=json.dumps({"query": query}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def dismiss_newsletter_dialog(self) -> None:
        """Mark Dagster's first-visit "Join the Dagster community" dialog as seen (as Skip does)."""
        done = self.graphql("mutation { setNuxSeen }")
        assert done.get("data", {}).get("setNuxSeen") is not None, done
        assert self.graphql("{ shouldShowNux }")["data"]["shouldShowNux"] is False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the whole process group (webserver, daemon, code server), escalating to SIGKILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        # children that outlived the leader are still in the group
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
