"""The wheel ships the library only: no benchmark, fault trial or example, and nothing it imports."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ("shadow_dagster_bench", "demo_project", "warehouse_project", "tests")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("shadow_dagster-*.whl")
    return path


def test_the_wheel_holds_the_library_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"shadow_dagster", next(t for t in tops if t.endswith(".dist-info"))}, tops
    folders = {n.split("/")[1] for n in names if n.startswith("shadow_dagster/") and n.count("/") > 1}
    assert folders == {"cli", "dagster", "envs", "fingerprint", "graph", "signals", "speculation", "store"}, folders
    for gone in ("bench", "example", "reliability", "synthetic.py", "launch.py"):
        assert not [n for n in names if f"/{gone}" in n], gone


def test_the_wheel_needs_nothing_outside_it(wheel):
    """No shipped module imports the repository's benchmarks or examples, and the UI is an extra."""
    archive = zipfile.ZipFile(wheel)
    for name in (n for n in archive.namelist() if n.endswith(".py")):
        tree = ast.parse(archive.read(name), name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            else:
                continue
            assert not [m for m in modules if m.split(".")[0] in HARNESS], (name, modules)
    (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    requires = Parser().parsestr(archive.read(meta).decode()).get_all("Requires-Dist")
    webserver = [r for r in requires if r.startswith("dagster-webserver")]
    assert webserver and all('extra == "ui"' in r or 'extra == "dev"' in r for r in webserver), webserver
    assert not [r for r in requires if r.startswith(("playwright", "pytest")) and "extra ==" not in r]
