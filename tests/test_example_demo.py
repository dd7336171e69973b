"""scripts/demo.sh for real: seeds a history, serves `dagster dev`, prints the URL."""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "demo.sh"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop the script (SIGTERM, as a user would) and then kill whatever is left of what it started:
    its own process group and dagster dev's, which runs in a group of its own."""
    groups = _groups_under(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)                   # the script's grace period for dagster dev, bounded
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)


def test_demo_refuses_a_busy_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PORT": str(port), "DEMO_HOME": str(tmp_path / "home")})
    assert done.returncode == 1
    assert f"port {port} is already in use" in done.stderr and "make demo PORT=" in done.stderr
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("name, value", [("SHADOW_DAGSTER_EXAMPLE_LOAD_S", "soon"),
                                         ("SHADOW_DAGSTER_EXAMPLE_SCALE", "0")])
def test_demo_refuses_a_bad_setting_in_one_line(name, value, tmp_path):
    env = {**os.environ, "PORT": str(_free_port()), "DEMO_HOME": str(tmp_path / "home"), name: value}
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and name in done.stderr, done.stderr
    assert not (tmp_path / "home").exists()


@pytest.mark.slow
def test_demo_seeds_history_serves_the_ui_and_shows_a_reuse(tmp_path, monkeypatch):
    """`make demo` end to end on 2 seeded days: the UI answers, the live instance it launches gets
    a shadow run, and a live step reuses its output, which the demo prints with a link. The live
    run's warehouse load waits (as the demo's 25-30 s loads do) and is held by a gate file until the
    shadow run has finished, so how fast this host launches runs decides nothing here."""
    from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

    from shadow_dagster.tags import PARENT_TAG, SHADOW_TAG

    port, home, log, gate = _free_port(), tmp_path / "home", tmp_path / "demo.log", tmp_path / "gate"
    env = {**os.environ, "PORT": str(port), "DEMO_HOME": str(home), "DEMO_DAYS": "2",
           "SHADOW_DAGSTER_EXAMPLE_SCALE": "0.02", "SHADOW_DAGSTER_EXAMPLE_LOAD_S": "25",
           "SHADOW_DAGSTER_EXAMPLE_LOAD_GATE": str(gate), "DEMO_FOLLOW_S": "3600"}
    env.pop("DAGSTER_HOME", None)
    gate.touch()                                 # the seeded history's loads take their 25 s only
    with log.open("w") as out:
        proc = subprocess.Popen(["bash", str(SCRIPT)], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for(what, done, bound_s=400):
        deadline = time.monotonic() + bound_s               # a bound on waiting, not an assertion
        while not done():
            assert proc.poll() is None and time.monotonic() < deadline, (what, log.read_text()[-3000:])
            time.sleep(0.5)

    try:
        wait_for("history seeded", lambda: "ingesting signals" in log.read_text())
        gate.unlink()                            # the live run's load now waits for the shadow run
        wait_for("the UI", lambda: f"shadow-dagster demo is up: http://127.0.0.1:{port}" in log.read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=10) as response:
            assert b"dagster_webserver_version" in response.read()
        assert (home / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
        assert (home / "event_log.db").exists()              # consolidated event storage in use
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        text = log.read_text()
        assert "launched a live ingest_job run" in text
        live_key = text.split("(workflow ", 1)[1].split(")", 1)[0]
        assert (home / "shadow_dagster" / "fingerprints" / "ingest_job.fingerprint").exists()
        with DagsterInstance.get() as instance:
            runs = instance.get_runs()
            live = [r for r in runs if "#demo-" in r.tags.get("shadow_dagster/workflow", "")]
            seeded = [r for r in runs if r not in live and not r.tags.get(SHADOW_TAG)]
            # 2 seeded days of the 3-job chain, then the refit that fits the fingerprint before serving
            assert sorted(r.job_name for r in seeded) == sorted(
                ["ingest_job", "train_job", "notify_job"] * 2 + ["shadow_dagster_refit"])
            assert all(r.status == DagsterRunStatus.SUCCESS for r in seeded)
            assert [r.job_name for r in live if r.job_name == "ingest_job"] == ["ingest_job"]

            def shadow_finished():
                shadows = instance.get_runs(RunsFilter(tags={SHADOW_TAG: "true", PARENT_TAG: live_key}))
                assert not [r for r in shadows if r.status == DagsterRunStatus.FAILURE], shadows
                return any(r.status == DagsterRunStatus.SUCCESS for r in shadows)

            wait_for("a shadow run of the live instance", shadow_finished)

            def reported():   # the sensor logs the report itself: the pre-executed step, in the UI
                event = instance.get_latest_materialization_event(AssetKey("speculation_report"))
                text = event.asset_materialization.metadata["live_instances"].value if event else ""
                return f"### `{live_key}`" in text and "| pre-executed" in text

            wait_for("the speculation report of the live instance", reported)
        gate.touch()                             # the live load completes; train_job follows
        wait_for("the live instance to end", lambda: "demo ended:" in log.read_text())
        text = log.read_text()
        assert f"demo ended: {live_key}: " in text and "reused a shadow output" in text, text[-3000:]
        reuse = [line for line in text.splitlines() if line.startswith("reuse: live train_job run ")]
        assert reuse and f"http://127.0.0.1:{port}/runs/" in reuse[0], text[-3000:]
        with DagsterInstance.get() as instance:         # the live instance itself went through
            chain = instance.get_runs(RunsFilter(tags={"shadow_dagster/workflow": live_key}))
            assert sorted((r.job_name, r.status) for r in chain if not r.tags.get(SHADOW_TAG)) == [
                (job, DagsterRunStatus.SUCCESS) for job in ("ingest_job", "notify_job", "train_job")]
    finally:
        _stop(proc)


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, process group, state) of every process, from /proc."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue            # gone meanwhile
        fields = text[text.rindex(")") + 2:].split()
        out[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return out


def _descendants(root: int, procs: dict[int, tuple[int, int, str]]) -> set[int]:
    found, todo = {root}, [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, _, _) in procs.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                todo.append(pid)
    return found


def _groups_under(root: int) -> set[int]:
    """The process groups of `root` and of everything under it, from one snapshot of /proc (a
    process that exits meanwhile is simply not in it)."""
    procs = _processes()
    return {root} | {procs[pid][1] for pid in _descendants(root, procs) if pid in procs}


def _alive_in(groups: set[int]) -> dict[int, str]:
    """Processes (not zombies) left in these process groups, with their command lines."""
    left = {}
    for pid, (_, pgid, state) in _processes().items():
        if pgid in groups and state != "Z":
            try:
                left[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
            except OSError:
                pass
    return left


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_demo_stops_every_process_it_started(sig, tmp_path):
    """Ctrl-C (SIGINT to the demo's process group, as a terminal sends it) or SIGTERM stops the real
    `dagster dev` and everything under it within 20 s. The history seeding is skipped: it is the
    long-running part (dagster dev, a launched live run) that used to ignore both signals."""
    port, home, log = _free_port(), tmp_path / "home", tmp_path / "demo.log"
    env = {**os.environ, "PORT": str(port), "DEMO_HOME": str(home), "DEMO_SKIP_SEED": "1",
           "DEMO_STOP_GRACE": "10", "SHADOW_DAGSTER_EXAMPLE_SCALE": "0.02"}
    env.pop("DAGSTER_HOME", None)
    with log.open("w") as out:
        proc = subprocess.Popen(["bash", str(SCRIPT)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    groups = {proc.pid}
    try:
        deadline = time.monotonic() + 240                  # a bound on waiting, not an assertion
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
                    if b"dagster_webserver_version" in response.read():
                        break
            except OSError:
                time.sleep(0.5)
        groups |= _groups_under(proc.pid)
        started = _alive_in(groups)
        assert len(groups) == 2, started                   # the script's group and dagster dev's own
        assert any("dagster_webserver" in c for c in started.values())
        assert any("dagster._daemon" in c for c in started.values()), started

        os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 20
        while _alive_in(groups) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive_in(groups), (_alive_in(groups), log.read_text()[-3000:])
        assert proc.wait(timeout=5) == 128 + sig, log.read_text()[-3000:]
        assert "stopping dagster dev" in log.read_text(), log.read_text()[-3000:]
    finally:
        groups |= _groups_under(proc.pid)                  # also when it failed before they were found
        for group in groups:                               # whatever this test started, never left behind
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _stop(proc)
