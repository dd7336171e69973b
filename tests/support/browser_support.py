"""Helpers of the UI tests in tests/e2e/test_example_demo.py: headless Chromium (Debian's package,
driven by Playwright through `executable_path`, no browser download) against the demo's UI."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SHADOW_DAGSTER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DOC_SHOTS = ROOT / "docs" / "screenshots"
UPDATE_SHOTS_ENV = "SHADOW_DAGSTER_UPDATE_SCREENSHOTS"
WAIT_MS = 60_000                     # how long to wait for a page element to appear (not a timing assertion)
VIEWPORT = {"width": 1400, "height": 900}


def chromium_or_skip() -> str:
    """Chromium's path; without it the UI tests skip with the reason, and fail under CI=true."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    message = f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def tracked_shots() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(DOC_SHOTS.glob("*.png"))}


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(url + "/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def dismiss_newsletter_dialog(url: str) -> None:
    """Mark Dagster's first-visit "Join the Dagster community" dialog as seen (as Skip does)."""
    done = graphql(url, "mutation { setNuxSeen }")
    assert done.get("data", {}).get("setNuxSeen") is not None, done
    assert graphql(url, "{ shouldShowNux }")["data"]["shouldShowNux"] is False


def open_page(page, path: str, ready: str) -> None:
    """Go to `path` and wait until `ready` is visible."""
    from playwright.sync_api import expect

    page.goto(path)
    expect(page.get_by_text(ready, exact=True).first).to_be_visible()


def shot(page, shots: Path, name: str) -> None:
    """Save a screenshot once CSS transitions (dialogs fading in) have finished."""
    page.wait_for_function("() => document.getAnimations().every(a => a.playState !== 'running')")
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / name))


def metadata_row(page, key: str):
    """The row of the asset page's metadata table whose first cell is exactly `key`."""
    return page.locator(f"xpath=//tr[td[1][normalize-space()='{key}']]").first


def list_row(page, *texts: str):
    """The row of one of the UI's virtualized lists (runs, automations) that contains every text."""
    rows = page.locator("[class*='VirtualizedTable_row']")
    for text in texts:
        rows = rows.filter(has_text=text)
    return rows.first


def js_number(value: float) -> str:
    """How the UI prints a float metadata value (JavaScript's Number#toString)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
