"""Spoofing in real runs: shadow_dagster/* tags or metadata set by hand, forged or tampered shadow
outputs. A live run may take a shadow output only when its stored provenance equals the key the
live step computes and the file matches its recorded content hash.

A spoofed reuse is a live run that reused a shadow output where no reuse may happen, or that left
in live storage a value other than what the step computes. A verified reuse is a hand-tagged run
whose provenance really matches: its output is the value the live step would compute.
"""

import collections
import pickle
import tempfile
import time
from pathlib import Path

from dagster import Config, MetadataValue, Output, asset, materialize

from shadow_dagster.dagster.io_manager import PROVENANCE_KEY_META, ShadowIOManager
from shadow_dagster.dagster.reuse import shadow_reusable
from shadow_dagster.store.outputs import ShadowOutputStore, shadow_outputs
from shadow_dagster.speculation.provenance import content_hash
from shadow_dagster.tags import CRITICAL_TAG, PREDICTION_TAG, REUSED_FROM, SECONDS_SAVED, SHADOW_TAG

NONCRIT = {CRITICAL_TAG: "false"}
HAND_TAGS = {SHADOW_TAG: "true", PREDICTION_TAG: "hand-made"}
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
SPOOF = {"metadata": None}  # metadata the `labelled` asset attaches to its output (set per scenario)


class Up(Config):
    n: int = 3


class Scale(Config):
    factor: int = 2


@asset(code_version="1", op_tags=NONCRIT)
def upstream(config: Up) -> list:
    return list(range(config.n))


@asset(code_version="1", op_tags=NONCRIT)
@shadow_reusable
def derived(config: Scale, upstream: list) -> list:
    return [x * config.factor for x in upstream]


@asset(code_version="1", op_tags=NONCRIT)
def labelled(upstream: list) -> Output:  # undecorated: may only write its own value
    return Output([x - 1 for x in upstream], metadata=SPOOF["metadata"] or {})


ASSETS = [upstream, derived, labelled]


class Env:
    def __init__(self, workdir: Path):
        self.live, self.shadow = workdir / "live", workdir / "shadow"
        self.live.mkdir(parents=True)
        self.url = f"sqlite:///{workdir / 'index.db'}"
        self.resources = {"io_manager": ShadowIOManager(base_dir=str(self.live), shadow_dir=str(self.shadow),
                                                        store_url=self.url)}
        self.store = ShadowOutputStore(self.shadow, self.url)

    def run(self, instance, selection, *, n=3, factor=2, tags=None):
        ops = {"upstream": {"config": {"n": n}}, "derived": {"config": {"factor": factor}}}
        res = materialize(ASSETS, instance=instance, resources=self.resources, selection=selection, tags=tags or {},
                          run_config={"ops": {k: v for k, v in ops.items() if k in selection}, **QUIET})
        if not res.success:
            raise RuntimeError(f"run of {selection} failed")
        return res

    def live_value(self, name: str):
        return pickle.loads((self.live / name).read_bytes())


def _reused(res, node: str) -> bool:
    return REUSED_FROM in res.asset_materializations_for_node(node)[0].metadata


def _live_derived(instance, env: Env, *, n=3, factor=2, tags=None) -> tuple[bool, bool]:
    res = env.run(instance, ["derived"], factor=factor, tags=tags)
    return _reused(res, "derived"), env.live_value("derived") == [x * factor for x in range(n)]


def scenario(instance, name: str, workdir: Path) -> dict:
    """Run one scenario; returns reused, right_value and whether reuse was allowed."""
    env = Env(workdir)
    try:
        env.run(instance, ["upstream"])
        allowed = False
        if name == "hand_tagged_other_config":
            env.run(instance, ["derived"], factor=9, tags=HAND_TAGS)
            reused, right = _live_derived(instance, env)
        elif name == "hand_tagged_other_upstream":
            env.run(instance, ["upstream", "derived"], n=5, tags=HAND_TAGS)
            reused, right = _live_derived(instance, env)
        elif name == "hand_tagged_same_provenance":
            env.run(instance, ["derived"], tags=HAND_TAGS)
            allowed = True
            reused, right = _live_derived(instance, env)
        elif name in ("tampered_file", "truncated_file", "forged_row_old_hash"):
            env.run(instance, ["derived"], tags=HAND_TAGS)
            (row,) = env.store.list(prediction_id=HAND_TAGS[PREDICTION_TAG])
            forged = pickle.dumps(["forged"], 4)
            if name == "tampered_file":
                row.path.write_bytes(forged)
            elif name == "truncated_file":
                row.path.write_bytes(row.path.read_bytes()[:-3])
            else:  # a new file registered under the real key, hash column left as it was
                fake = row.path.with_name(row.path.name + ".fake")
                fake.write_bytes(forged)
                with env.store.engine.begin() as conn:
                    conn.execute(shadow_outputs.update().where(shadow_outputs.c.provenance_key == row.provenance_key)
                                 .values(relpath=str(fake.relative_to(env.shadow)), size_bytes=len(forged)))
            reused, right = _live_derived(instance, env)
        elif name == "run_tags_on_live_run":
            shadow = env.run(instance, ["derived"], factor=9, tags=HAND_TAGS)
            (row,) = env.store.list(run_id=shadow.run_id)
            tags = {REUSED_FROM: shadow.run_id, PROVENANCE_KEY_META: row.provenance_key, SECONDS_SAVED: "99"}
            reused, right = _live_derived(instance, env, tags=tags)
        elif name == "output_metadata":
            shadow = env.run(instance, ["derived"], factor=9, tags=HAND_TAGS)
            (row,) = env.store.list(run_id=shadow.run_id)
            SPOOF["metadata"] = {REUSED_FROM: MetadataValue.dagster_run(shadow.run_id),
                                 PROVENANCE_KEY_META: row.provenance_key}
            try:
                env.run(instance, ["labelled"])
            finally:
                SPOOF["metadata"] = None
            right = env.live_value("labelled") == [-1, 0, 1]
            reused = content_hash((env.live / "labelled").read_bytes()) == row.content_hash
        else:
            raise ValueError(f"unknown spoofing scenario {name!r}; expected one of {SCENARIOS}")
    finally:
        env.store.dispose()
    return {"reused": reused, "right_value": right, "allowed": allowed}


SCENARIOS = ("hand_tagged_other_config", "hand_tagged_other_upstream", "hand_tagged_same_provenance",
             "tampered_file", "truncated_file", "forged_row_old_hash", "run_tags_on_live_run", "output_metadata")


def spoofing_trials(instance, trials: int | None = None, echo=None) -> dict:
    """Run the scenarios (cycled up to `trials`, default each once)."""
    trials = len(SCENARIOS) if trials is None else trials
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    counts = collections.Counter()
    per: dict[str, dict] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shadow-spoof-") as tmp:
        for i in range(trials):
            name = SCENARIOS[i % len(SCENARIOS)]
            r = scenario(instance, name, Path(tmp) / f"s{i}")
            per[name] = r
            spoofed = (r["reused"] and not r["allowed"]) or not r["right_value"]
            counts["spoofed_reuses"] += int(spoofed)
            counts["verified_reuses"] += int(r["reused"] and r["allowed"] and r["right_value"])
            counts["refused"] += int(not r["reused"] and not r["allowed"] and r["right_value"])
            if echo:
                echo(f"  spoofing {name}: {r}")
    return {"trials": trials, **{k: counts[k] for k in ("spoofed_reuses", "verified_reuses", "refused")},
            "scenarios": per, "seconds": round(time.monotonic() - started, 1)}
