"""scripts/demo.sh (what `make demo` runs) for real: seeds a history, serves `dagster dev`, shows a
reuse, and what its UI shows in a real browser (the README's pictures are taken here)."""

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from support import browser_support as support
import pytest

ROOT = Path(__file__).resolve().parents[2]
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


@dataclass
class Demo:
    """A running `scripts/demo.sh` whose live instance has ended, as read back from its instance."""

    url: str
    home: Path
    log: str
    live_key: str
    reused: dict           # asset -> shadow run id, from the live runs' materializations
    shadow_runs: list      # the live instance's shadow runs (DagsterRun)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`make demo`'s script end to end on 2 seeded days, followed until its live instance ended; the
    UI tests below look at the same `dagster dev`. The live run's warehouse load waits (as the
    demo's 25-30 s loads do) and is held by a gate file until the shadow run has finished, so how
    fast this host launches runs decides nothing here."""
    from dagster import (
        AssetKey,
        DagsterEventType,
        DagsterInstance,
        DagsterRunStatus,
        RunsFilter,
    )

    from shadow_dagster.tags import PARENT_TAG, REUSED_FROM, SHADOW_TAG, WORKFLOW_TAG

    tmp = tmp_path_factory.mktemp("demo")
    port, home, log, gate = _free_port(), tmp / "home", tmp / "demo.log", tmp / "gate"
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
        with pytest.MonkeyPatch.context() as mp:
            wait_for("history seeded", lambda: "ingesting signals" in log.read_text())
            gate.unlink()                        # the live run's load now waits for the shadow run
            wait_for("the UI", lambda: f"shadow-dagster demo is up: http://127.0.0.1:{port}" in log.read_text())
            mp.setenv("DAGSTER_HOME", str(home))
            text = log.read_text()
            assert "launched a live ingest_job run" in text, text[-3000:]
            live_key = text.split("(workflow ", 1)[1].split(")", 1)[0]
            with DagsterInstance.get() as instance:
                def shadows():
                    return instance.get_runs(RunsFilter(tags={SHADOW_TAG: "true", PARENT_TAG: live_key}))

                def shadow_finished():
                    assert not [r for r in shadows() if r.status == DagsterRunStatus.FAILURE], shadows()
                    return any(r.status == DagsterRunStatus.SUCCESS for r in shadows())

                wait_for("a shadow run of the live instance", shadow_finished)

                def reported():   # the sensor logs the report itself: the pre-executed step, in the UI
                    event = instance.get_latest_materialization_event(AssetKey("speculation_report"))
                    text = event.asset_materialization.metadata["live_instances"].value if event else ""
                    return f"### `{live_key}`" in text and "| pre-executed" in text

                wait_for("the speculation report of the live instance", reported)
            gate.touch()                         # the live load completes; train_job follows
            wait_for("the live instance to end", lambda: "demo ended:" in log.read_text())
            with DagsterInstance.get() as instance:
                reused = {}
                for run in instance.get_runs(RunsFilter(tags={WORKFLOW_TAG: live_key})):
                    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
                        m = entry.asset_materialization
                        if REUSED_FROM in m.metadata:
                            reused[m.asset_key.to_user_string()] = m.metadata[REUSED_FROM].value
                found = Demo(f"http://127.0.0.1:{port}", home, log.read_text(), live_key, reused, shadows())
        yield found
    finally:
        _stop(proc)


@pytest.mark.slow
def test_demo_seeds_history_serves_the_ui_and_shows_a_reuse(demo, monkeypatch):
    """`make demo` end to end: the UI answers, the live instance it launches gets a shadow run, and
    a live step reuses its output, which the demo prints with a link."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from shadow_dagster.tags import SHADOW_TAG

    with urllib.request.urlopen(f"{demo.url}/server_info", timeout=10) as response:
        assert b"dagster_webserver_version" in response.read()
    assert (demo.home / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
    assert (demo.home / "event_log.db").exists()              # consolidated event storage in use
    assert (demo.home / "shadow_dagster" / "fingerprints" / "ingest_job.fingerprint").exists()
    text, live_key = demo.log, demo.live_key
    assert f"demo ended: {live_key}: " in text and "reused a shadow output" in text, text[-3000:]
    reuse = [line for line in text.splitlines() if line.startswith("reuse: live train_job run ")]
    assert reuse and f"{demo.url}/runs/" in reuse[0], text[-3000:]
    assert demo.reused and set(demo.reused.values()) <= {r.run_id for r in demo.shadow_runs}, demo.reused
    monkeypatch.setenv("DAGSTER_HOME", str(demo.home))
    with DagsterInstance.get() as instance:
        runs = instance.get_runs()
        live = [r for r in runs if "#demo-" in r.tags.get("shadow_dagster/workflow", "")]
        seeded = [r for r in runs if r not in live and not r.tags.get(SHADOW_TAG)]
        # 2 seeded days of the 3-job chain, and the refit that fits the fingerprint before serving
        assert sorted(r.job_name for r in seeded if r.job_name != "shadow_dagster_refit") == sorted(
            ["ingest_job", "train_job", "notify_job"] * 2)
        assert "shadow_dagster_refit" in {r.job_name for r in seeded}
        assert all(r.status == DagsterRunStatus.SUCCESS for r in seeded)
        chain = instance.get_runs(RunsFilter(tags={"shadow_dagster/workflow": live_key}))
        assert sorted((r.job_name, r.status) for r in chain if not r.tags.get(SHADOW_TAG)) == [
            (job, DagsterRunStatus.SUCCESS) for job in ("ingest_job", "notify_job", "train_job")]


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


# ------------------------------------------------------------- the demo's UI, in a real browser
# What a newcomer sees in `make demo`'s UI, opened by headless Chromium. Every value asserted is read
# back from the demo's instance. The screenshots go to a temporary folder; with
# SHADOW_DAGSTER_UPDATE_SCREENSHOTS=1 they replace the README's pictures in docs/screenshots/, so those
# pictures are taken from `make demo` itself (on a 2-day history):
#   SHADOW_DAGSTER_UPDATE_SCREENSHOTS=1 .venv/bin/python -m pytest -m browser tests/e2e/test_example_demo.py
LOCATION = "shadow_dagster_example"
TICK_WAIT_MS = 150_000               # the daemon's first sensor tick, on a busy 2-core machine


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Where screenshots go: a temporary folder, or docs/screenshots/ when asked to update them;
    unless asked, the tracked pictures are left exactly as they were."""
    update = os.environ.get(support.UPDATE_SHOTS_ENV) == "1"
    before = support.tracked_shots()
    yield support.DOC_SHOTS if update else tmp_path_factory.mktemp("screenshots")
    if not update:
        assert support.tracked_shots() == before, \
            f"the UI tests changed {support.DOC_SHOTS} without {support.UPDATE_SHOTS_ENV}=1"


@pytest.fixture(scope="module")
def browser(demo):
    chromium = support.chromium_or_skip()
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    support.dismiss_newsletter_dialog(demo.url)   # a newcomer clicks "Skip" once; the pictures show the pages
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=support.CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(demo, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport=support.VIEWPORT, base_url=demo.url)
    pg = context.new_page()
    pg.set_default_timeout(support.WAIT_MS)
    expect.set_options(timeout=support.WAIT_MS)
    yield pg
    context.close()


def _fingerprint_row(demo, monkeypatch) -> dict:
    """The demo's `workflow_fingerprint` accuracy row of its one workflow, from its instance."""
    from dagster import AssetKey, DagsterInstance

    monkeypatch.setenv("DAGSTER_HOME", str(demo.home))
    with DagsterInstance.get() as instance:
        meta = instance.get_latest_materialization_event(
            AssetKey("workflow_fingerprint")).asset_materialization.metadata
    rows = [r.data for r in meta["accuracy"].value.records]
    assert [r["workflow"] for r in rows] == ["ingest_job"], meta["accuracy_md"].value
    return rows[0]


def _shadow_run(demo):
    """The shadow run whose output the live run reused (a hit: kept on its run page)."""
    run_id = sorted(demo.reused.items())[0][1]
    return next(r for r in demo.shadow_runs if r.run_id == run_id)


@pytest.mark.browser
@pytest.mark.slow
def test_asset_group_lineage_shows_the_shadow_dagster_assets(page, shots):
    from playwright.sync_api import expect

    support.open_page(page, f"/locations/{LOCATION}/asset-groups/shadow_dagster/lineage", "workflow_fingerprint")
    expect(page.get_by_text("Asset Group in", exact=False).first).to_be_visible()
    for name in ("shadow_signals", "workflow_graph", "execution_patterns", "workflow_fingerprint",
                 "speculation_report"):
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    # the refit job materialised the history assets and the speculation report: their nodes say so
    expect(page.get_by_text("Materialized", exact=True)).to_have_count(4)
    support.shot(page, shots, "lineage.png")


@pytest.mark.browser
@pytest.mark.slow
def test_fingerprint_metadata_shows_the_workflow_and_its_predictor(demo, page, shots, monkeypatch):
    from playwright.sync_api import expect

    row = _fingerprint_row(demo, monkeypatch)
    support.open_page(page, "/assets/workflow_fingerprint", "accuracy")
    expect(support.metadata_row(page, "ingest_job/instances")).to_contain_text(str(row["instances"]))
    # the accuracy table: this workflow's row names the predictor the fingerprint chose
    accuracy = support.metadata_row(page, "accuracy")
    header = [h.strip() for h in accuracy.locator("th").all_inner_texts()]
    cells = accuracy.locator("tbody tr").filter(has_text="ingest_job").first.locator("td")
    expected = [("workflow", "ingest_job"), ("instances", str(row["instances"])), ("predictor", row["predictor"])]
    if row["fingerprint_top1"] is not None:              # held-out accuracy once there are enough instances
        expected.append(("fingerprint_top1", support.js_number(row["fingerprint_top1"])))
    for column, value in expected:
        expect(cells.nth(header.index(column))).to_have_text(value)
    accuracy.scroll_into_view_if_needed()
    support.shot(page, shots, "fingerprint.png")


@pytest.mark.browser
@pytest.mark.slow
def test_runs_list_shows_shadow_runs_beside_live_runs(demo, page, shots):
    from playwright.sync_api import expect

    shadow = _shadow_run(demo)
    short = shadow.run_id[:8]
    support.open_page(page, "/runs", short)
    shadow_row = support.list_row(page, short)
    expect(shadow_row).to_contain_text("shadow_dagster/shadow: true")
    expect(shadow_row).to_contain_text(f"shadow_dagster/parent: {demo.live_key}")
    expect(shadow_row).to_contain_text(shadow.job_name)
    for job in ("ingest_job", "train_job", "notify_job"):        # the live chain of the same instance
        expect(support.list_row(page, f"shadow_dagster/workflow: {demo.live_key}", job)).to_be_visible()
    support.shot(page, shots, "runs.png")


@pytest.mark.browser
@pytest.mark.slow
def test_shadow_run_page_shows_its_tags(demo, page, shots):
    from playwright.sync_api import expect

    shadow = _shadow_run(demo)
    tags = dict(shadow.tags)
    support.open_page(page, f"/runs/{shadow.run_id}", shadow.job_name)
    expect(page.get_by_text("RUN_SUCCESS", exact=True).first).to_be_visible()     # its event log has loaded
    page.get_by_role("button", name="View tags and config").click()
    dialog = page.get_by_role("dialog")
    for key in ("shadow_dagster/shadow", "shadow_dagster/parent", "shadow_dagster/prediction",
                "shadow_dagster/probability"):
        expect(dialog).to_contain_text(key)
        expect(dialog).to_contain_text(tags[key])
    assert tags["shadow_dagster/shadow"] == "true"
    support.shot(page, shots, "shadow_run.png")


@pytest.mark.browser
@pytest.mark.slow
def test_automation_page_lists_the_running_signal_sensor(page, shots):
    from playwright.sync_api import expect

    support.open_page(page, "/automation", "shadow_signal_sensor")
    for name in ("shadow_signal_sensor", "shadow_dagster_refit_schedule", "shadow_speculative_sensor"):
        row = support.list_row(page, name)
        expect(row).to_be_visible()
        expect(row.locator("input[type=checkbox]").last).to_be_checked()      # its toggle: running
    support.shot(page, shots, "automation.png")
    # the sensor's own page: running, and the daemon of `dagster dev` has evaluated it
    support.open_page(page, f"/locations/{LOCATION}/sensors/shadow_signal_sensor", "Latest tick")
    expect(page.get_by_text("shadow_signal_sensor").first).to_be_visible()
    expect(page.get_by_text("Running", exact=True).first).to_be_visible()
    expect(page.get_by_text("turns run and step events into temporal signals", exact=False).first).to_be_visible()
    tick = page.get_by_text(re.compile(r"^\d+ runs? requested$|^Skipped$")).first
    expect(tick).to_be_visible(timeout=TICK_WAIT_MS)
    support.shot(page, shots, "sensors.png")


@pytest.mark.browser
@pytest.mark.slow
def test_reused_materialization_shows_reused_from(demo, page, shots):
    from playwright.sync_api import expect

    asset, shadow_run = sorted(demo.reused.items())[0]
    support.open_page(page, f"/assets/{asset}", "shadow_dagster/reused_from")
    expect(support.metadata_row(page, "shadow_dagster/reused_from")).to_contain_text(shadow_run)
    expect(support.metadata_row(page, "shadow_dagster/seconds_saved")).to_be_visible()
    support.shot(page, shots, "reused.png")
