"""Private Dagster names live in one module, and each resolves against the installed Dagster."""

import re
from pathlib import Path

from shadow_dagster.dagster import compat

PACKAGE = Path(compat.__file__).resolve().parents[1]


def test_every_private_name_resolves():
    for name in compat.PRIVATE:
        assert getattr(compat, name) is not None, name


def test_no_private_dagster_import_outside_the_compat_module():
    private = re.compile(r"^\s*(from|import)\s+dagster(_shared)?\._?\w*", re.M)
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "compat.py":
            continue
        for m in private.finditer(path.read_text()):
            if "dagster._" in m.group(0) or "dagster_shared" in m.group(0):
                offenders.append(f"{path.relative_to(PACKAGE)}: {m.group(0).strip()}")
    assert not offenders, offenders
