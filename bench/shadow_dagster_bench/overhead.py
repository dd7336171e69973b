"""`shadow-dagster bench overhead`: what the integration costs a project that uses it.

One small project written twice, identical but for the last line (`defs = Definitions(...)` and
`defs = with_shadow(Definitions(...))`), measured side by side in alternating samples:

- `import_s_added`: median seconds to import the code location and build its repository (what
  every process that loads it pays: the webserver, the daemon, each run worker and, with the
  multiprocess executor, each step process), integrated minus plain, each in a fresh interpreter
  after `import dagster`, with bytecode caches written by one uncounted load first;
- `live_run_ratio`: median wall time of the project's 3-step job run by `dagster job execute`
  with the multiprocess executor, integrated over plain (no history, so nothing is reused: the
  pure overhead of the guard, the reuse check and the extra imports).

`burners` CPU-burning processes run beside it, as on a busy host.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shadow_dagster_bench.warehouse import _burners

PROJECT = '''
import hashlib

import dagster as dg


def work(seed: str) -> str:
    digest = seed.encode()
    for _ in range({iters}):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


@dg.asset(code_version="1")
def raw() -> str:
    return work("raw")


@dg.asset(code_version="1")
def features(raw: str) -> str:
    return work(raw)


@dg.asset(code_version="1", tags={{"shadow_dagster/critical": "false"}})
def report(features: str) -> str:
    return work(features)


everything = dg.define_asset_job("everything", selection=dg.AssetSelection.all())
nightly = dg.ScheduleDefinition(name="nightly", job=everything, cron_schedule="0 3 * * *")
'''

LAST_LINE = {
    "plain": "defs = dg.Definitions(assets=[raw, features, report], jobs=[everything], schedules=[nightly])\n",
    "shadow": ("from shadow_dagster import with_shadow\n\n"
               "defs = with_shadow(dg.Definitions(assets=[raw, features, report], jobs=[everything], "
               "schedules=[nightly]))\n"),
}

LOAD = """
import sys, time
import dagster
t = time.perf_counter()
import {module} as project
project.defs.get_repository_def()
print(time.perf_counter() - t)
"""


def write_project(root: Path, iters: int) -> dict[str, Path]:
    """Write the plain and the integrated module into `root`."""
    paths = {}
    for mode, last in LAST_LINE.items():
        path = root / f"project_{mode}.py"
        path.write_text(PROJECT.format(iters=iters) + "\n" + last)
        paths[mode] = path
    return paths


def load_seconds(root: Path, mode: str, env: dict) -> float:
    done = subprocess.run([sys.executable, "-c", LOAD.format(module=f"project_{mode}")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"loading the {mode} project failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def run_seconds(root: Path, mode: str, env: dict) -> float:
    dagster = Path(sys.executable).with_name("dagster")
    config = root / "multiprocess.yaml"
    config.write_text("execution:\n  config:\n    multiprocess:\n      max_concurrent: 2\n")
    started = time.perf_counter()
    done = subprocess.run([str(dagster), "job", "execute", "-f", f"project_{mode}.py", "-j", "everything",
                           "-c", str(config)], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} run failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return wall


def run(*, samples: int = 5, runs: int = 3, iters: int = 200_000, burners: int = 0, echo=print) -> dict:
    """Measure both figures; see the module docstring."""
    from shadow_dagster_bench.home import write_instance_yaml

    with tempfile.TemporaryDirectory(prefix="shadow-dagster-overhead-") as tmp:
        root = Path(tmp)
        write_project(root, iters)
        homes = {}
        for mode in LAST_LINE:
            homes[mode] = root / f"home_{mode}"
            homes[mode].mkdir()
            write_instance_yaml(homes[mode])
        # bytecode caching on, as in an installed environment (a host may turn it off for its own reasons)
        base = {k: v for k, v in os.environ.items()
                if not k.startswith("SHADOW_DAGSTER_") and k != "PYTHONDONTWRITEBYTECODE"}
        envs = {mode: {**base, "DAGSTER_HOME": str(home), "PYTHONPATH": str(root)} for mode, home in homes.items()}
        loads: dict[str, list[float]] = {m: [] for m in LAST_LINE}
        walls: dict[str, list[float]] = {m: [] for m in LAST_LINE}
        with _burners(burners):
            for mode in LAST_LINE:                        # warm-up, not counted: writes the bytecode caches
                load_seconds(root, mode, envs[mode])
            for i in range(samples):                      # alternating, so drift hits both alike
                for mode in (("plain", "shadow") if i % 2 == 0 else ("shadow", "plain")):
                    loads[mode].append(load_seconds(root, mode, envs[mode]))
            echo(f"load: plain {statistics.median(loads['plain']):.3f} s, "
                 f"integrated {statistics.median(loads['shadow']):.3f} s (median of {samples})")
            for i in range(runs):
                for mode in (("plain", "shadow") if i % 2 == 0 else ("shadow", "plain")):
                    walls[mode].append(run_seconds(root, mode, envs[mode]))
                    echo(f"run {i + 1} {mode}: {walls[mode][-1]:.2f} s")
    med = {k: {m: round(statistics.median(v), 4) for m, v in d.items()} for k, d in
           (("load_s", loads), ("run_wall_s", walls))}
    return {
        "import_s_added": round(med["load_s"]["shadow"] - med["load_s"]["plain"], 4),
        "live_run_ratio": round(med["run_wall_s"]["shadow"] / med["run_wall_s"]["plain"], 4),
        **med, "samples": samples, "runs": runs, "burners": burners,
        "load_samples_s": {m: [round(x, 4) for x in v] for m, v in loads.items()},
    }


if __name__ == "__main__":   # pragma: no cover - `shadow-dagster bench overhead` is the entry point
    print(json.dumps(run()))
