"""Isolation in real runs: shadow runs that try to reach live storage, run critical steps, or die
while writing; live runs killed in the middle of a promotion.

Every scenario snapshots the live directory (every file's bytes) before and after; a changed,
added or removed file is a live write. Critical bodies leave a marker file when they run; a marker
after a shadow run counts as a critical step run in a shadow run. A torn promotion is a live
file that holds neither the old value nor the new one.
"""

import collections
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from dagster import Config, asset, materialize

from shadow_dagster.dagster.critical import critical_guard, guard_assets
from shadow_dagster.dagster.io_manager import ShadowIOManager
from shadow_dagster.dagster.reuse import shadow_reusable
from shadow_dagster.store.outputs import COMPLETE, ShadowOutputStore
from shadow_dagster.tags import CRITICAL_TAG, PREDICTION_TAG, REUSED_FROM, SHADOW_TAG

SHADOW = {SHADOW_TAG: "true", PREDICTION_TAG: "isolation"}
NONCRIT = {CRITICAL_TAG: "false"}
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
MARKERS: dict[str, Path] = {}  # where critical bodies record that they ran


class Up(Config):
    n: int = 3


@asset(code_version="1", op_tags=NONCRIT)
def source(config: Up) -> list:
    return list(range(config.n))


@asset(code_version="1", op_tags=NONCRIT)
@shadow_reusable
def keyed(source: list) -> list:
    return [x + 1 for x in source]


@asset(op_tags=NONCRIT)  # no code version: a shadow run stores it under runs/<run id>/ (never reused)
def unkeyed(source: list) -> int:
    return sum(source)


def _mark(name: str) -> None:
    (MARKERS["dir"] / name).write_text("side effect")


@asset(code_version="1")
def publish_plain() -> int:  # critical, no inputs, undecorated: stopped by guard_assets
    _mark("publish_plain")
    return 1


@asset(code_version="1")
@shadow_reusable
def publish_reusable() -> int:
    _mark("publish_reusable")
    return 2


@asset(code_version="1")
@critical_guard
def publish_guarded() -> int:
    _mark("publish_guarded")
    return 3


@asset(code_version="1")
def email(source: list) -> int:  # critical with an input
    _mark("email")
    return len(source)


ASSETS = guard_assets([source, keyed, unkeyed, publish_plain, publish_reusable, publish_guarded, email])
CRITICAL = ("publish_plain", "publish_reusable", "publish_guarded", "email")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def live_changes(before: dict, after: dict) -> int:
    return sum(1 for k in before.keys() | after.keys() if before.get(k) != after.get(k))


class Env:
    """A live root, a shadow root and an index for one scenario."""

    def __init__(self, workdir: Path, shadow_dir: Path | None = None):
        self.live = workdir / "live"
        self.live.mkdir(parents=True, exist_ok=True)
        self.shadow = shadow_dir or workdir / "shadow"
        self.url = f"sqlite:///{workdir / 'index.db'}"
        self.resources = {"io_manager": ShadowIOManager(base_dir=str(self.live), shadow_dir=str(self.shadow),
                                                        store_url=self.url)}

    def run(self, instance, selection, tags=None, n=3):
        config = {"ops": {"source": {"config": {"n": n}}}} if "source" in selection else {}
        try:
            return materialize(ASSETS, instance=instance, resources=self.resources, selection=selection,
                               tags=tags or {}, run_config={**config, **QUIET}, raise_on_error=False)
        except Exception as exc:  # noqa: BLE001 - a refused configuration fails the whole run early
            return exc


def _failed(result) -> bool:
    return isinstance(result, Exception) or not result.success


def scenario_plain(instance, env: Env) -> dict:
    env.run(instance, ["source", "keyed", "unkeyed"])
    before = snapshot(env.live)
    res = env.run(instance, ["keyed", "unkeyed"], SHADOW)
    return {"live_writes": live_changes(before, snapshot(env.live)), "refused": int(_failed(res))}


def scenario_symlink(instance, env: Env, which: str) -> dict:
    """The shadow root's objects/ or runs/ directory is a symlink into live storage."""
    env.run(instance, ["source", "keyed", "unkeyed"])
    env.shadow.mkdir(parents=True, exist_ok=True)
    target = env.live / "trap"
    target.mkdir(exist_ok=True)
    before = snapshot(env.live)
    os.symlink(target, env.shadow / which)
    res = env.run(instance, ["keyed" if which == "objects" else "unkeyed"], SHADOW)
    return {"live_writes": live_changes(before, snapshot(env.live)), "refused": int(_failed(res))}


def scenario_overlap(instance, workdir: Path, inside: bool) -> dict:
    """The shadow root inside live storage, or live storage inside the shadow root."""
    Env(workdir).run(instance, ["source", "keyed"])  # live files written with a sound configuration
    env = Env(workdir, shadow_dir=workdir / "live" / "shadow" if inside else workdir)
    before = snapshot(env.live)
    res = env.run(instance, ["keyed"], SHADOW)
    return {"live_writes": live_changes(before, snapshot(env.live)), "refused": int(_failed(res))}


def scenario_critical(instance, env: Env, node: str) -> dict:
    env.run(instance, ["source"])
    for f in MARKERS["dir"].iterdir():
        f.unlink()
    before = snapshot(env.live)
    res = env.run(instance, [node], SHADOW)
    ran = len(list(MARKERS["dir"].iterdir()))
    return {"live_writes": live_changes(before, snapshot(env.live)), "critical_in_shadow": ran,
            "refused": int(_failed(res))}


CHILD = textwrap.dedent("""
    import os, sys
    from dagster import DagsterInstance, materialize
    from shadow_dagster.dagster.io_manager import ShadowIOManager
    from shadow_dagster_bench.reliability import isolation as iso
    from shadow_dagster.speculation import atomic
    live, shadow, url, mode = sys.argv[1:5]
    real_replace = os.replace
    def die(src, dst):
        if mode == "promotion" and os.path.basename(str(dst)) == "keyed":
            os._exit(9)   # live run: temp copy written, rename not done
        if mode == "shadow_write" and "objects" in str(dst):
            os._exit(9)   # shadow run: payload written to a temp file, rename not done
        return real_replace(src, dst)
    atomic.os.replace = die
    tags = iso.SHADOW if mode == "shadow_write" else {}
    materialize(iso.ASSETS, instance=DagsterInstance.get(), selection=["keyed"], tags=tags,
                resources={"io_manager": ShadowIOManager(base_dir=live, shadow_dir=shadow, store_url=url)},
                run_config=iso.QUIET)
    sys.exit(3)  # the kill point was not reached
""")


def _kill_child(env: Env, mode: str) -> int:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(env.live), str(env.shadow), env.url, mode],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    if proc.returncode != 9:
        raise RuntimeError(f"kill point {mode} not reached (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return proc.returncode


def scenario_killed_shadow_write(instance, env: Env) -> dict:
    env.run(instance, ["source", "keyed"])
    env.run(instance, ["source"], n=5)
    before = snapshot(env.live)
    _kill_child(env, "shadow_write")
    store = ShadowOutputStore(env.shadow, env.url)
    try:
        complete_without_file = sum(1 for o in store.list(status=COMPLETE) if not (o.path and o.path.exists()))
    finally:
        store.dispose()
    return {"live_writes": live_changes(before, snapshot(env.live)), "complete_without_file": complete_without_file}


def scenario_killed_promotion(instance, env: Env) -> dict:
    """A live run killed after copying a shadow output next to the live file, before the rename."""
    env.run(instance, ["source", "keyed"])
    old = (env.live / "keyed").read_bytes()
    env.run(instance, ["source"], n=5)
    env.run(instance, ["keyed"], SHADOW)
    _kill_child(env, "promotion")
    now = (env.live / "keyed").read_bytes()
    torn = int(now != old and pickle.loads(now) != [1, 2, 3, 4, 5])
    retry = env.run(instance, ["keyed"])
    reused = REUSED_FROM in retry.asset_materializations_for_node("keyed")[0].metadata
    final = pickle.loads((env.live / "keyed").read_bytes())
    return {"torn_promotions": torn + int(final != [1, 2, 3, 4, 5]), "promoted_on_retry": int(reused)}


def scenarios() -> list[str]:
    return ["plain", "symlink_objects", "symlink_runs", "shadow_inside_live", "live_inside_shadow",
            *[f"critical_{n}" for n in CRITICAL], "killed_shadow_write", "killed_promotion"]


def run_scenario(instance, name: str, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    MARKERS["dir"] = workdir / "markers"
    MARKERS["dir"].mkdir(exist_ok=True)
    if name in ("shadow_inside_live", "live_inside_shadow"):
        return scenario_overlap(instance, workdir, inside=name == "shadow_inside_live")
    env = Env(workdir)
    if name == "plain":
        return scenario_plain(instance, env)
    if name.startswith("symlink_"):
        return scenario_symlink(instance, env, name.removeprefix("symlink_"))
    if name.startswith("critical_"):
        return scenario_critical(instance, env, name.removeprefix("critical_"))
    if name == "killed_shadow_write":
        return scenario_killed_shadow_write(instance, env)
    if name == "killed_promotion":
        return scenario_killed_promotion(instance, env)
    raise ValueError(f"unknown isolation scenario {name!r}; expected one of {scenarios()}")


def isolation_trials(instance, trials: int | None = None, echo=None) -> dict:
    """Run the scenarios (cycled up to `trials`, default each once); totals and per-scenario results."""
    names = scenarios()
    trials = len(names) if trials is None else trials
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    totals = collections.Counter()
    per: dict[str, dict] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shadow-iso-") as tmp:
        for i in range(trials):
            name = names[i % len(names)]
            result = run_scenario(instance, name, Path(tmp) / f"s{i}")
            totals.update({k: v for k, v in result.items() if isinstance(v, int)})
            per[name] = result
            if echo:
                echo(f"  isolation {name}: {result}")
    return {"trials": trials, "live_writes": totals["live_writes"], "critical_in_shadow": totals["critical_in_shadow"],
            "torn_promotions": totals["torn_promotions"], "complete_without_file": totals["complete_without_file"],
            "scenarios": per, "seconds": round(time.monotonic() - started, 1)}
