"""The pure core imports no Dagster: every module of every core package, each in a fresh interpreter."""

import pkgutil
import subprocess
import sys

import shadow_dagster

CORE = ("signals", "graph", "fingerprint", "speculation", "store", "envs")


def _modules() -> list[str]:
    out = []
    for package in CORE:
        mod = __import__(f"shadow_dagster.{package}", fromlist=["_"])
        out.append(mod.__name__)
        out += [m.name for m in pkgutil.walk_packages(mod.__path__, prefix=mod.__name__ + ".")]
    return sorted(out)


def test_every_core_package_is_listed_and_the_glue_is_not():
    found = {m.split(".")[1] for m in _modules()}
    assert found == set(CORE)
    packages = {m.name for m in pkgutil.iter_modules(shadow_dagster.__path__) if m.ispkg}
    assert packages - set(CORE) == {"cli", "dagster"}   # a new package must be placed on one side


def test_no_core_module_imports_dagster():
    mods = _modules()
    code = ("import importlib, sys\n"
            f"for name in {mods!r}:\n"
            "    importlib.import_module(name)\n"
            "    bad = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.'))\n"
            "    if bad:\n"
            "        print(name, 'imports', bad[:3]); sys.exit(1)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(mods) > 30

