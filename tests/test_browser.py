"""What a newcomer sees in Dagster's UI, checked in a real browser (issue 5, "Browser test").

A fresh DAGSTER_HOME is seeded with real runs (tests/browser_support.py), `dagster dev` serves the
example code location on a free port, and headless Chromium (Debian's package, driven by
Playwright through `executable_path`, no browser download) opens the pages a user would open.
Every value asserted is read back from the instance, not hard-coded. Its screenshots go to a
temporary folder; with SHADOW_DAGSTER_UPDATE_SCREENSHOTS=1 they replace the README's pictures in
docs/screenshots/ (tracked files: only when you mean to update them).

Run it alone: `.venv/bin/python -m pytest -m browser tests/test_browser.py`; to refresh the README's
pictures: `SHADOW_DAGSTER_UPDATE_SCREENSHOTS=1 .venv/bin/python -m pytest -m browser tests/test_browser.py`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import browser_support as support

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOC_SHOTS = support.ROOT / "docs" / "screenshots"
UPDATE_SHOTS_ENV = "SHADOW_DAGSTER_UPDATE_SCREENSHOTS"
_shots: dict[str, Path] = {}
LOCATION = "shadow_dagster_example"
WAIT_MS = 60_000                     # how long to wait for a page element to appear (not a timing assertion)
TICK_WAIT_MS = 150_000               # the daemon's first sensor tick, on a busy 2-core machine
VIEWPORT = {"width": 1400, "height": 900}


def _chromium_or_skip() -> str:
    if Path(support.CHROMIUM).exists():
        return support.CHROMIUM
    message = f"{support.CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def _tracked_shots() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(DOC_SHOTS.glob("*.png"))}


@pytest.fixture(scope="module", autouse=True)
def shots_dir(tmp_path_factory):
    """Where screenshots go: a temporary folder, or docs/screenshots/ when asked to update them;
    unless asked, the tracked pictures are left exactly as they were."""
    update = os.environ.get(UPDATE_SHOTS_ENV) == "1"
    before = _tracked_shots()
    _shots["dir"] = DOC_SHOTS if update else tmp_path_factory.mktemp("screenshots")
    yield _shots["dir"]
    if not update:
        assert _tracked_shots() == before, f"the browser test changed {DOC_SHOTS} without {UPDATE_SHOTS_ENV}=1"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A seeded DAGSTER_HOME served by `dagster dev`; the process group is always stopped."""
    chromium = _chromium_or_skip()
    pytest.importorskip("playwright")
    home = tmp_path_factory.mktemp("browser_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        mp.setenv("SHADOW_DAGSTER_EXAMPLE_SCALE", support.SCALE)
        mp.delenv("SHADOW_DAGSTER_FINGERPRINT_DIR", raising=False)
        seeded = support.seed(home)
        dev = support.DagsterDev(home, home.parent / "dagster_dev.log")
        try:
            dev.dismiss_newsletter_dialog()       # a newcomer clicks "Skip" once; the pictures show the pages
            yield seeded, dev, chromium
        finally:
            dev.stop()


@pytest.fixture(scope="module")
def browser(demo):
    from playwright.sync_api import sync_playwright

    _, _, chromium = demo
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=support.CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(demo, browser):
    from playwright.sync_api import expect

    _, dev, _ = demo
    context = browser.new_context(viewport=VIEWPORT, base_url=dev.url)
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    yield pg
    context.close()


def _open(page, path: str, ready: str) -> None:
    """Go to `path` and wait until `ready` is visible."""
    from playwright.sync_api import expect

    page.goto(path)
    expect(page.get_by_text(ready, exact=True).first).to_be_visible()


def _shot(page, name: str) -> None:
    """Save a screenshot once CSS transitions (dialogs fading in) have finished."""
    page.wait_for_function("() => document.getAnimations().every(a => a.playState !== 'running')")
    shots = _shots["dir"]
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / name))


def _metadata_row(page, key: str):
    """The row of the asset page's metadata table whose first cell is exactly `key`."""
    return page.locator(f"xpath=//tr[td[1][normalize-space()='{key}']]").first


def _list_row(page, *texts: str):
    """The row of one of the UI's virtualized lists (runs, automations) that contains every text."""
    rows = page.locator("[class*='VirtualizedTable_row']")
    for text in texts:
        rows = rows.filter(has_text=text)
    return rows.first


def _js_number(value: float) -> str:
    """How the UI prints a float metadata value (JavaScript's Number#toString)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def test_asset_group_lineage_shows_the_shadow_dagster_assets(demo, page):
    from playwright.sync_api import expect

    _open(page, f"/locations/{LOCATION}/asset-groups/shadow_dagster/lineage", "workflow_fingerprint")
    expect(page.get_by_text("Asset Group in", exact=False).first).to_be_visible()
    for name in ("shadow_signals", "workflow_graph", "execution_patterns", "workflow_fingerprint",
                 "speculation_report"):
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    # the refit job materialised the history assets and the speculation report: their nodes say so
    expect(page.get_by_text("Materialized", exact=True)).to_have_count(4)
    _shot(page, "lineage.png")


def test_fingerprint_metadata_shows_heldout_accuracy_and_predictor(demo, page):
    from playwright.sync_api import expect

    seeded, _, _ = demo
    _open(page, "/assets/workflow_fingerprint", f"{seeded.workflow}/fingerprint_top1")
    top1 = _metadata_row(page, f"{seeded.workflow}/fingerprint_top1")
    expect(top1).to_contain_text(_js_number(seeded.top1))
    # the accuracy table: this workflow's row names the predictor the fingerprint chose
    accuracy = _metadata_row(page, "accuracy")
    header = [h.strip() for h in accuracy.locator("th").all_inner_texts()]
    cells = accuracy.locator("tbody tr").filter(has_text=seeded.workflow).first.locator("td")
    for column, value in (("workflow", seeded.workflow), ("instances", str(seeded.instances)),
                          ("predictor", seeded.predictor), ("fingerprint_top1", _js_number(seeded.top1))):
        expect(cells.nth(header.index(column))).to_have_text(value)
    accuracy.scroll_into_view_if_needed()
    _shot(page, "fingerprint.png")


def test_runs_list_shows_shadow_runs_beside_live_runs(demo, page):
    from playwright.sync_api import expect

    seeded, _, _ = demo
    short = seeded.shadow_run_id[:8]
    _open(page, "/runs", short)
    shadow_row = _list_row(page, short)
    expect(shadow_row).to_contain_text("shadow_dagster/shadow: true")
    expect(shadow_row).to_contain_text(f"shadow_dagster/parent: {seeded.shadow_tags['shadow_dagster/parent']}")
    expect(shadow_row).to_contain_text(seeded.shadow_job)
    for job in ("ingest_job", "train_job", "notify_job"):        # the live chain of the same day
        expect(_list_row(page, f"shadow_dagster/workflow: {seeded.shadow_tags['shadow_dagster/parent']}",
                         job)).to_be_visible()
    _shot(page, "runs.png")


def test_shadow_run_page_shows_its_tags(demo, page):
    from playwright.sync_api import expect

    seeded, _, _ = demo
    tags = seeded.shadow_tags
    _open(page, f"/runs/{seeded.shadow_run_id}", seeded.shadow_job)
    expect(page.get_by_text("RUN_SUCCESS", exact=True).first).to_be_visible()     # its event log has loaded
    page.get_by_role("button", name="View tags and config").click()
    dialog = page.get_by_role("dialog")
    for key in ("shadow_dagster/shadow", "shadow_dagster/parent", "shadow_dagster/prediction",
                "shadow_dagster/probability"):
        expect(dialog).to_contain_text(key)
        expect(dialog).to_contain_text(tags[key])
    assert tags["shadow_dagster/shadow"] == "true"
    _shot(page, "shadow_run.png")


def test_automation_page_lists_the_running_signal_sensor(demo, page):
    from playwright.sync_api import expect

    _open(page, "/automation", "shadow_signal_sensor")
    for name in ("shadow_signal_sensor", "shadow_dagster_refit_schedule"):
        row = _list_row(page, name)
        expect(row).to_be_visible()
        expect(row.locator("input[type=checkbox]").last).to_be_checked()      # its toggle: running
    _shot(page, "automation.png")
    # the sensor's own page: running, and the daemon of `dagster dev` has evaluated it
    _open(page, f"/locations/{LOCATION}/sensors/shadow_signal_sensor", "Latest tick")
    expect(page.get_by_text("shadow_signal_sensor").first).to_be_visible()
    expect(page.get_by_text("Running", exact=True).first).to_be_visible()
    expect(page.get_by_text("turns run and step events into temporal signals", exact=False).first).to_be_visible()
    tick = page.get_by_text(re.compile(r"^\d+ runs? requested$|^Skipped$")).first
    expect(tick).to_be_visible(timeout=TICK_WAIT_MS)
    _shot(page, "sensors.png")


def test_reused_materialization_shows_reused_from(demo, page):
    from playwright.sync_api import expect

    seeded, _, _ = demo
    assert seeded.reused, "the live run reused no shadow output"
    asset, shadow_run = sorted(seeded.reused.items())[0]
    assert shadow_run == seeded.shadow_run_id
    _open(page, f"/assets/{asset}", "shadow_dagster/reused_from")
    expect(_metadata_row(page, "shadow_dagster/reused_from")).to_contain_text(shadow_run)
    expect(_metadata_row(page, "shadow_dagster/seconds_saved")).to_be_visible()
    _shot(page, "reused.png")
