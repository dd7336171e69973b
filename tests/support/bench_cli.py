"""Shared by the benchmark smoke tests: run `shadow-dagster bench ... --json` and read its figures."""

from __future__ import annotations

import json

from click.testing import CliRunner

from shadow_dagster.cli import main


def bench_json(args: list[str], keys, bulky: str) -> tuple[dict, dict]:
    """The JSON object on the last line of `shadow-dagster bench <args>`, after checking it exited 0
    and holds every one of `keys`; and the same without its `bulky` entry, to show in failures."""
    result = CliRunner().invoke(main, ["bench", *args])
    assert result.exit_code == 0, result.output[-2000:]
    out = json.loads(result.output.strip().splitlines()[-1])
    for key in keys:
        assert key in out, key
    return out, {k: v for k, v in out.items() if k != bulky}
