"""The README's integration snippets load as written, and `with_shadow` keeps every user field on
hand-written, autoloaded (`load_defs`) and `load_assets_from_modules` projects."""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from shadow_dagster import with_shadow

ROOT = Path(__file__).resolve().parents[2]

PROJECT_ASSETS = '''
import dagster as dg

@dg.asset(code_version="1")
def trips():
    return [1, 2]

@dg.asset(code_version="1", tags={"shadow_dagster/critical": "false"})
def summary(trips):
    return len(trips)

@dg.asset_check(asset=trips)
def trips_not_empty(trips):
    return dg.AssetCheckResult(passed=bool(trips))

everything = dg.define_asset_job("everything", selection=dg.AssetSelection.all())
nightly = dg.ScheduleDefinition(name="nightly", job=everything, cron_schedule="0 3 * * *")
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A `dg`-style project: pyproject.toml and my_project/defs/ autoloaded by `load_defs`."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "my-project"\nversion = "0.1"\n\n[tool.dg]\ndirectory_type = "project"\n\n'
        '[tool.dg.project]\nroot_module = "my_project"\n')
    defs_dir = tmp_path / "my_project" / "defs"
    defs_dir.mkdir(parents=True)
    (tmp_path / "my_project" / "__init__.py").write_text("")
    (defs_dir / "__init__.py").write_text("")
    (defs_dir / "assets.py").write_text(PROJECT_ASSETS)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m == "my_project" or m.startswith("my_project.")]:
        del sys.modules[name]


def test_readme_snippets_load_as_written(project):
    """Every README (and docs/integration.md) block that calls with_shadow, as a code location of its own (one module-scope
    Definitions each, checked by Dagster's own loader)."""
    text = (ROOT / "README.md").read_text() + (ROOT / "docs" / "integration.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S)
              if "with_shadow" in b]
    assert len(blocks) >= 3
    args = []
    for i, block in enumerate(blocks):
        (project / f"snippet_{i}.py").write_text(block)
        args += ["-f", f"snippet_{i}.py"]
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run([str(dagster), "definitions", "validate", *args], cwd=project, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(project)})
    out = done.stdout + done.stderr
    for i in range(len(blocks)):
        assert f"Validation successful for code location snippet_{i}.py" in out, out[-3000:]
    assert "failed" not in out.lower(), out[-3000:]


def _steps(defs, job):
    return sorted(n.name for n in defs.resolve_job_def(job).graph.node_defs)


def _check_kept(user, merged):
    assert _steps(merged, "everything") == _steps(user, "everything")
    assert [s.name for s in merged.schedules if s.name == "nightly"] == ["nightly"]
    assert "trips_not_empty" in {k.name for k in merged.resolve_asset_graph().asset_check_keys}
    assert merged.resolve_job_def("__shadow_dagster_shadow_job")            # summary is non-critical
    assert merged.get_sensor_def("shadow_speculative_sensor")
    guarded = {a.key.to_user_string(): a for a in merged.assets if isinstance(a, dg.AssetsDefinition)
               and a.is_executable and a.key.to_user_string() in ("trips", "summary")}
    assert set(guarded) == {"trips", "summary"}
    assert all(a.node_def.compute_fn.decorated_fn.__shadow_guarded__ for a in guarded.values())


def test_with_shadow_on_an_autoloaded_project_keeps_every_field(project):
    import my_project.defs

    user = dg.load_defs(my_project.defs)
    merged = with_shadow(user, store_url=f"sqlite:///{project / 's.db'}")
    _check_kept(user, merged)
    assert merged.component_tree is user.component_tree is not None


def test_with_shadow_on_load_assets_from_modules(project):
    mod = importlib.import_module("my_project.defs.assets")
    user = dg.Definitions(assets=dg.load_assets_from_modules([mod]), asset_checks=[mod.trips_not_empty],
                          jobs=[mod.everything], schedules=[mod.nightly])
    merged = with_shadow(user, store_url=f"sqlite:///{project / 's.db'}")
    _check_kept(user, merged)
    assert merged.resolve_job_def("everything").execute_in_process().success    # guarded bodies still run


def test_with_shadow_refuses_what_is_not_definitions():
    with pytest.raises(TypeError, match="with_shadow takes your Definitions, got list"):
        with_shadow([])
