"""The flat public API: every name the top level exports resolves, and the user docs import from it."""

import re
from pathlib import Path

import shadow_dagster

ROOT = Path(__file__).resolve().parents[2]


def test_every_exported_name_resolves_lazily():
    for name in shadow_dagster.__all__:
        assert getattr(shadow_dagster, name) is not None, name
    assert {"with_shadow", "shadow_definitions", "ShadowIOManager", "SpeculationConfig", "ShadowStorage",
            "PolicyConfig", "PrepareConfig", "ShadowDagsterError", "WarmableResource"} <= set(shadow_dagster.__all__)


def test_the_readme_and_the_integration_docs_import_only_the_top_level():
    deep = []
    for doc in ("README.md", "docs/integration.md", "docs/speculation.md"):
        for line in (ROOT / doc).read_text().splitlines():
            if re.match(r"\s*from shadow_dagster\.\w+", line):
                deep.append(f"{doc}: {line.strip()}")
    assert deep == []
