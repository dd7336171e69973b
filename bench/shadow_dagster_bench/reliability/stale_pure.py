"""No stale reuse, at the level of the provenance key function (cheap, many seeded trials).

A trial draws the parts of a shadow step (asset, partition, code version, inputs as
`data_version@storage_id`, config), mutates them as the live step would see them, and asks the
key function. The oracle is independent of it: the live step may reuse the shadow output only
when every part is equal (types included: 1, 1.0 and True differ; dict order does not matter).
- stale reuse: the keys are equal but the parts differ;
- correct reuse: equal parts, equal keys; missed reuse: equal parts, different keys;
- refused: the live key is unknown (a part is unknown), so there is no reuse.
"""

from __future__ import annotations

import collections
import random
import string
from typing import Any

from shadow_dagster.speculation.provenance import try_provenance_key

CHANGES = ("input_data", "upstream_version", "code_version", "config", "partition", "new_input")
SAME = ("none", "reordered")
MUTATIONS = (*SAME, *CHANGES, "unknown")


def same(a: Any, b: Any) -> bool:
    """Deep equality with strict types (1 != 1.0 != True) and order-free mappings."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def differences(shadow: dict, live: dict) -> dict:
    """{part: [shadow value, live value]} for the top-level parts that differ (reprs beyond 200 chars cut)."""
    def show(v):
        return v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)[:200]
    return {k: [show(shadow.get(k)), show(live.get(k))] for k in shadow.keys() | live.keys()
            if not same(shadow.get(k), live.get(k))}


def _word(rng: random.Random, n: int | None = None) -> str:
    alphabet = string.ascii_letters + string.digits + "_-./:é漢 "
    rest = "".join(rng.choice(alphabet) for _ in range((n or rng.randint(1, 12)) - 1))
    return rng.choice(string.ascii_letters) + rest  # never blank


def _hex(rng: random.Random) -> str:
    return "%064x" % rng.getrandbits(256)


def _leaf(rng: random.Random) -> Any:
    kind = rng.randrange(5)
    return [rng.randint(-5, 5), rng.uniform(-2, 2), _word(rng), rng.random() < 0.5, None][kind]


def _config(rng: random.Random, depth: int = 0) -> Any:
    if depth > 2 or rng.random() < 0.3:
        return _leaf(rng)
    if rng.random() < 0.3:
        return [_config(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {_word(rng, rng.randint(1, 6)): _config(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def draw_parts(rng: random.Random) -> dict:
    """Random parts of a shadow step whose key is known."""
    inputs = {f"up_{i}": f"{_hex(rng)[:rng.choice((8, 64))]}@{rng.randint(1, 10**6)}" for i in range(rng.randint(0, 3))}
    return {"asset_key": rng.choice(["orders", "stats", "model/features", "a"]),
            "partition_key": rng.choice([None, "2026-11-25", "eu", "a|b"]),
            "code_version": rng.choice(["1", "v2", "sha:" + _hex(rng)[:12], _word(rng)]),
            "input_data_versions": inputs, "config": {"params": _config(rng)}}


def _change_leaf(rng: random.Random, value: Any) -> Any:
    """A different value: the same type nudged, or another type with an equal-looking value."""
    if isinstance(value, bool):
        return rng.choice([not value, int(value)])
    if isinstance(value, int):
        return rng.choice([value + 1, float(value), str(value)])
    if isinstance(value, float):
        return rng.choice([value + 1e-9, str(value), -value if value else 1.0])
    if isinstance(value, str):
        return rng.choice([value + "x", value.upper() if value.upper() != value else value + "Y",
                           value[:-1] if value else "a", value + " "])
    return rng.choice([0, "", False])  # None -> something


def _change_config(rng: random.Random, cfg: Any) -> Any:
    if isinstance(cfg, dict) and cfg and rng.random() < 0.8:
        key = rng.choice(sorted(cfg))
        out = dict(cfg)
        if rng.random() < 0.15:
            del out[key]
        else:
            out[key] = _change_config(rng, cfg[key])
        return out
    if isinstance(cfg, dict):
        return {**cfg, _word(rng) + "_new": _leaf(rng)}
    if isinstance(cfg, list) and cfg and rng.random() < 0.8:
        out = list(cfg)
        i = rng.randrange(len(out))
        out[i] = _change_config(rng, out[i])
        return out
    if isinstance(cfg, list):
        return cfg + [_leaf(rng)]
    return _change_leaf(rng, cfg)


def _reordered(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _reordered(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_reordered(v, rng) for v in value]
    return value


def mutate(rng: random.Random, parts: dict, mutation: str) -> dict:
    """The live step's parts after `mutation`."""
    live = {**parts, "input_data_versions": dict(parts["input_data_versions"]), "config": parts["config"]}
    inputs = live["input_data_versions"]
    if mutation == "none":
        pass
    elif mutation == "reordered":
        live = _reordered(live, rng)
    elif mutation in ("input_data", "upstream_version") and inputs:
        name = rng.choice(sorted(inputs))
        version, _, sid = inputs[name].rpartition("@")
        if mutation == "input_data":  # new content: new data version (and a new materialization)
            inputs[name] = f"{_change_leaf(rng, version)}@{int(sid) + rng.randint(1, 50)}"
        else:  # same data version reported, but another materialization of the input
            inputs[name] = f"{version}@{int(sid) + rng.randint(1, 50)}"
    elif mutation in ("input_data", "upstream_version", "new_input"):
        inputs[f"up_{len(inputs)}"] = f"{_hex(rng)[:16]}@{rng.randint(1, 10**6)}"
    elif mutation == "code_version":
        live["code_version"] = _change_leaf(rng, parts["code_version"])
    elif mutation == "config":
        live["config"] = _change_config(rng, parts["config"])
    elif mutation == "partition":
        old = parts["partition_key"]
        live["partition_key"] = rng.choice([p for p in (None, "2026-11-26", "eu", "EU", "a|b ") if p != old])
    elif mutation == "unknown":
        target = rng.choice(["code_version", "input", "config"])
        if target == "code_version":
            live["code_version"] = rng.choice([None, "", "UNKNOWN"])
        elif target == "input":
            inputs[rng.choice(sorted(inputs)) if inputs else "up_x"] = rng.choice([None, "UNKNOWN", "NULL", ""])
        else:
            live["config"] = {"params": rng.choice([float("nan"), float("inf"), {1: "non-string key"}])}
    else:
        raise ValueError(f"unknown mutation {mutation!r}; expected one of {MUTATIONS}")
    return live


def pure_trials(trials: int, seed: int = 0) -> dict:
    """`trials` seeded trials of the key function; counts by outcome and by mutation."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    rng = random.Random(seed)
    counts = collections.Counter()
    stale_examples: list[dict] = []
    per_mutation = collections.Counter()
    for i in range(trials):
        mutation = MUTATIONS[i % len(MUTATIONS)]
        shadow = draw_parts(rng)
        shadow_key, reason = try_provenance_key(**shadow)
        if shadow_key is None:
            raise RuntimeError(f"drawn shadow parts have no key ({reason}): the generator is wrong")
        live = mutate(rng, shadow, mutation)
        live_key, _ = try_provenance_key(**live)
        equal = same(shadow, live)
        per_mutation[mutation] += 1
        if live_key is None:
            counts["refused"] += 1
        elif live_key == shadow_key and equal:
            counts["correct_reuses"] += 1
        elif live_key == shadow_key:
            counts["stale_reuses"] += 1
            counts[f"stale:{mutation}"] += 1
            if len(stale_examples) < 5:
                stale_examples.append({"mutation": mutation, "differences": differences(shadow, live)})
        elif equal:
            counts["missed_reuses"] += 1
        else:
            counts["recomputed"] += 1
    return {"trials": trials, "stale_reuses": counts["stale_reuses"], "correct_reuses": counts["correct_reuses"],
            "missed_reuses": counts["missed_reuses"], "recomputed": counts["recomputed"], "refused": counts["refused"],
            "stale_by_mutation": {k[6:]: v for k, v in counts.items() if k.startswith("stale:")},
            "by_mutation": dict(per_mutation), "stale_examples": stale_examples}
