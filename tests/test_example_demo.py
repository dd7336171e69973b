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


@pytest.mark.slow
def test_demo_seeds_history_and_serves_the_ui(tmp_path, monkeypatch):
    from dagster import DagsterInstance, DagsterRunStatus

    port, home, log = _free_port(), tmp_path / "home", tmp_path / "demo.log"
    env = {**os.environ, "PORT": str(port), "DEMO_HOME": str(home), "DEMO_DAYS": "2",
           "SHADOW_DAGSTER_EXAMPLE_SCALE": "0.02"}
    env.pop("DAGSTER_HOME", None)
    with log.open("w") as out:
        proc = subprocess.Popen(["bash", str(SCRIPT)], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240                  # a bound on waiting, not an assertion
        while f"shadow-dagster demo is up: http://127.0.0.1:{port}" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert proc.poll() is None, log.read_text()[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=10) as response:
            assert b"dagster_webserver_version" in response.read()
        assert (home / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
        assert (home / "event_log.db").exists()              # consolidated event storage in use
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        assert "launched a live ingest_job run" in log.read_text()
        assert (home / "shadow_dagster" / "fingerprints" / "ingest_job.fingerprint").exists()
        with DagsterInstance.get() as instance:
            runs = instance.get_runs()
            live = [r for r in runs if "#demo-" in r.tags.get("shadow_dagster/workflow", "")]
            seeded = [r for r in runs if r not in live and not r.tags.get("shadow_dagster/shadow")]
            # 2 seeded days of the 3-job chain, then the refit that fits the fingerprint before serving
            assert sorted(r.job_name for r in seeded) == sorted(
                ["ingest_job", "train_job", "notify_job"] * 2 + ["shadow_dagster_refit"])
            assert all(r.status == DagsterRunStatus.SUCCESS for r in seeded)
            # and the live run the demo launches for the speculative sensor to follow
            assert [r.job_name for r in live if r.job_name == "ingest_job"] == ["ingest_job"]
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
