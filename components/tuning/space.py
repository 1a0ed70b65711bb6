"""tune.space → the concrete configurations a sweep launches.

The space is conditional on the config's own rules: a combination that `Params` refuses (label
smoothing with hinge, a critic without a Lipschitz constraint, …) is never launched. Grid search
crosses every grid entry and skips refused points; random search draws until it has
`num_samples` accepted configurations. Both report what they skipped and why."""
from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from components.config import ConfigError, Params, SpaceEntry

# Draws per accepted configuration before random search gives up on a space that is mostly refused.
MAX_DRAWS_PER_TRIAL = 50


@dataclass
class Expansion:
    configs: list[dict[str, Any]]
    skipped: Counter = field(default_factory=Counter)  # reason → count

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def skipped_summary(self) -> list[dict]:
        return [{"reason": r, "count": n} for r, n in self.skipped.most_common()]


def encode(config: dict[str, Any]) -> dict[str, Any]:
    """Section-valued entries travel through Ray Tune (and Optuna) as JSON text: their searchers take
    plain values, and a nested dict would read as nested search-space keys."""
    return {k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for k, v in config.items()}


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """Space values as dotted keys: a section-valued entry ({train: {objective: …}}, or its JSON text)
    becomes train.objective."""
    out = {}
    for key, value in config.items():
        if isinstance(value, str) and value.startswith("{"):
            value = json.loads(value)
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def refusal(base: Params, config: dict[str, Any]) -> str | None:
    """None when `config` applied to `base` is a valid configuration, else the config's reason."""
    config = flatten(config)
    try:
        base.with_overrides(config)
    except ConfigError as e:
        shown = ", ".join(f"{k}={v}" for k, v in config.items())
        return f"{shown}: " + " ".join(line.strip() for line in str(e).splitlines()[1:])
    return None


def draw(entry: SpaceEntry, rng: np.random.Generator) -> Any:
    if entry.distribution in ("grid", "choice"):
        values = entry.grid if entry.distribution == "grid" else entry.choice
        return values[int(rng.integers(len(values)))]
    low, high = entry.uniform or entry.loguniform
    if entry.distribution == "loguniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))


def reason_class(reason: str) -> str:
    """Group skips by the config's rule rather than by the exact values drawn."""
    return reason.split(": ", 1)[1] if ": " in reason else reason


def expand(base: Params, space: dict[str, SpaceEntry], search: str, num_samples: int, seed: int) -> Expansion:
    """Configurations for `grid` or `random` search (Optuna draws its own, see pipelines/tune.py)."""
    rng = np.random.default_rng(seed)
    out = Expansion([])
    if search == "grid":
        keys = [k for k, e in space.items() if e.distribution == "grid"]
        drawn = {k: e for k, e in space.items() if e.distribution != "grid"}
        for _ in range(num_samples):
            for values in itertools.product(*(space[k].grid for k in keys)):
                # the same number of draws for every grid point: a study gives each setting an equal search
                config = {**dict(zip(keys, values)), **{k: draw(e, rng) for k, e in drawn.items()}}
                if (why := refusal(base, config)) is None:
                    out.configs.append(config)
                else:
                    out.skipped[reason_class(why)] += 1
        if not out.configs:
            raise ConfigError(f"tune.space: every grid point is refused by the config, e.g. {next(iter(out.skipped))}")
        return out
    draws = 0
    while len(out.configs) < num_samples:
        if draws >= MAX_DRAWS_PER_TRIAL * num_samples:
            raise ConfigError(f"tune.space: {draws} draws gave only {len(out.configs)} acceptable configurations; "
                              f"most of the space is refused, e.g. {out.skipped.most_common(1)[0][0]}")
        config = {k: draw(e, rng) for k, e in space.items()}
        draws += 1
        if (why := refusal(base, config)) is None:
            out.configs.append(config)
        else:
            out.skipped[reason_class(why)] += 1
    return out


def make_valid(base: Params, config: dict[str, Any], fallbacks: dict[str, Any]) -> dict[str, Any]:
    """For PBT's explore: if a perturbed configuration is refused, put back the keys that make it so
    (their `fallbacks`, e.g. label smoothing 0 under hinge), the conditional space's rule."""
    if refusal(base, config) is None:
        return config
    for key in fallbacks:
        trial = {**config, key: fallbacks[key]}
        if refusal(base, trial) is None:
            return trial
    return {**config, **fallbacks}
