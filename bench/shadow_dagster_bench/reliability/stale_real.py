"""No stale reuse in real Dagster runs: shadow run, a change, live run, compare with a recompute.

Each seeded trial materializes `upstream` live, runs `derived` in a shadow run, applies one change
(input data, the upstream's data but not its config, code version, config, partition, or none; or
another partition of `upstream` re-materialized with other data, which must not stop reuse),
then runs `derived` live through ShadowIOManager and @shadow_reusable. The value the live run
leaves in live storage is compared with the value computed directly from the live parameters:
- stale reuse: the live run reused the shadow output although a part changed;
- wrong value: the live file differs from a recompute (whatever the cause);
- correct reuse: reused with nothing changed and the right value.
"""


import collections
import pickle
import random
import tempfile
import time
from pathlib import Path

from dagster import Config, DataVersion, Output, StaticPartitionsDefinition, asset, materialize

from shadow_dagster.dagster.io_manager import ShadowIOManager
from shadow_dagster.dagster.reuse import shadow_reusable
from shadow_dagster.speculation.provenance import content_hash
from shadow_dagster.tags import CRITICAL_TAG, PREDICTION_TAG, REUSED_FROM, SHADOW_TAG

PARTS = StaticPartitionsDefinition(["p0", "p1", "p2"])
NONCRIT = {CRITICAL_TAG: "false"}
CHANGES = ("input_data", "upstream_data", "code_version", "config", "partition")
SAME_INPUTS = ("none", "other_partition")  # the live step reads exactly what the shadow run read
MUTATIONS = (*SAME_INPUTS, "upstream_rematerialized", *CHANGES)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SOURCE = {"offset": 0}  # external data the upstream reads: it can change while its config does not


class UpConfig(Config):
    n: int = 3


class DerivedConfig(Config):
    factor: int = 2


def make_assets(code_version: int, user_versions: bool):
    """upstream (reads SOURCE) and derived (depends on its code version) as real assets."""

    @asset(code_version="1", partitions_def=PARTS, op_tags=NONCRIT)
    def upstream(config: UpConfig):
        value = [x + SOURCE["offset"] for x in range(config.n)]
        if user_versions:
            return Output(value, data_version=DataVersion(content_hash(pickle.dumps(value))))
        return value

    @asset(code_version=str(code_version), partitions_def=PARTS, op_tags=NONCRIT)
    @shadow_reusable
    def derived(config: DerivedConfig, upstream: list) -> list:
        return [x * config.factor + code_version for x in upstream]

    return [upstream, derived]


def expected_value(n: int, offset: int, factor: int, code_version: int) -> list:
    return [(x + offset) * factor + code_version for x in range(n)]


def _run(instance, assets, resources, node: str, partition: str, config: dict, tags=None):
    res = materialize(assets, instance=instance, resources=resources, selection=[node], partition_key=partition,
                      tags=tags or {}, run_config={"ops": {node: {"config": config}}, **QUIET},
                      raise_on_error=True)
    return res


def one_trial(instance, rng: random.Random, workdir: Path, mutation: str) -> dict:
    live_dir, shadow_dir = workdir / "live", workdir / "shadow"
    live_dir.mkdir(parents=True)
    resources = {"io_manager": ShadowIOManager(base_dir=str(live_dir), shadow_dir=str(shadow_dir),
                                               store_url=f"sqlite:///{workdir / 'index.db'}")}
    n, factor, cv, offset = rng.randint(1, 6), rng.randint(1, 5), rng.randint(1, 3), rng.randint(0, 9)
    part, other = rng.sample(PARTS.get_partition_keys(), 2)
    user_versions = rng.random() < 0.5
    assets = make_assets(cv, user_versions)
    SOURCE["offset"] = offset
    for p in (part, other):
        _run(instance, assets, resources, "upstream", p, {"n": n})
    _run(instance, assets, resources, "derived", part, {"factor": factor},
         tags={SHADOW_TAG: "true", PREDICTION_TAG: f"trial-{rng.getrandbits(32)}"})
    live = {"n": n, "factor": factor, "cv": cv, "offset": offset, "part": part}
    if mutation == "input_data":
        live["n"] = n + rng.randint(1, 3)
        _run(instance, assets, resources, "upstream", part, {"n": live["n"]})
    elif mutation == "upstream_data":  # same config, same code version: only the data changed
        live["offset"] = SOURCE["offset"] = offset + rng.randint(1, 5)
        _run(instance, assets, resources, "upstream", part, {"n": n})
    elif mutation == "upstream_rematerialized":  # same data again: a recompute is conservative
        _run(instance, assets, resources, "upstream", part, {"n": n})
    elif mutation == "code_version":
        live["cv"] = cv % 3 + 1
        assets = make_assets(live["cv"], user_versions)
    elif mutation == "config":
        live["factor"] = factor + rng.randint(1, 3)
    elif mutation == "partition":
        live["part"] = other
    elif mutation == "other_partition":  # as under load: other instances write their own partitions
        _run(instance, assets, resources, "upstream", other, {"n": n + rng.randint(1, 3)})
    elif mutation != "none":
        raise ValueError(f"unknown mutation {mutation!r}; expected one of {MUTATIONS}")
    res = _run(instance, assets, resources, "derived", live["part"], {"factor": live["factor"]})
    mat = res.asset_materializations_for_node("derived")[0]
    reused = REUSED_FROM in mat.metadata
    value = pickle.loads((live_dir / "derived" / live["part"]).read_bytes())
    right = expected_value(live["n"], live["offset"], live["factor"], live["cv"])
    return {"mutation": mutation, "reused": reused, "right_value": value == right, "user_versions": user_versions}


def real_trials(instance, trials: int, seed: int = 0, echo=None) -> dict:
    """`trials` real-run trials cycling the mutations; counts stale and correct reuses."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    rng = random.Random(seed)
    counts = collections.Counter()
    stale_by = collections.Counter()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shadow-stale-") as tmp:
        for i in range(trials):
            mutation = MUTATIONS[i % len(MUTATIONS)]
            r = one_trial(instance, rng, Path(tmp) / f"t{i}", mutation)
            counts["wrong_values"] += int(not r["right_value"])
            if r["reused"] and mutation in CHANGES:
                counts["stale_reuses"] += 1
                stale_by[mutation] += 1
            elif r["reused"] and r["right_value"]:
                counts["correct_reuses"] += 1
            elif not r["reused"] and mutation in SAME_INPUTS:
                counts["missed_reuses"] += 1
            elif not r["reused"]:
                counts["recomputed"] += 1
            if echo and (i + 1) % 10 == 0:
                echo(f"  real reuse: {i + 1}/{trials} trials, stale {counts['stale_reuses']}")
    return {"trials": trials, "stale_reuses": counts["stale_reuses"], "correct_reuses": counts["correct_reuses"],
            "wrong_values": counts["wrong_values"], "missed_reuses": counts["missed_reuses"],
            "recomputed": counts["recomputed"], "stale_by_mutation": dict(stale_by),
            "seconds": round(time.monotonic() - started, 1)}
