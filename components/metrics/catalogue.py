"""Every metric genpipe reports, with its direction (True: larger is better). Torch-free: the config
validates `promote.metric` and `tune.metric` against it.

An evaluator reports its metrics (components/metrics/evaluators/), a family adds its own
(components/families/); this is the union, for names and directions."""
from __future__ import annotations

# Suffix of a metric's error bar: its standard deviation over the evaluation's sampling seeds
# (components/evaluation.measure). `kid_std` and `is_std` are the metrics' own spreads within one seed.
SEED_STD = "_seed_std"


def fid_fits(n: int, feature_dim: int) -> bool:
    """FID fits a full-covariance Gaussian: it needs more samples than feature dimensions (else the covariance is
    singular). The one statement of the rule: the scorer, the evaluator's size check and the floor ask here."""
    return n > feature_dim


def all_metrics() -> dict[str, bool]:
    """name → greater is better, for every metric any evaluator or family reports: the default evaluator's
    first, then the families' own, then the other evaluators' (the order of a sweep CSV's columns)."""
    from components.families import FAMILIES
    from components.metrics.evaluators import EVALUATORS

    evaluators = EVALUATORS.values()
    out = dict(evaluators[0].reported())
    for family in FAMILIES.values():
        out.update(family.own_metrics)
    for evaluator in evaluators:
        out.update(evaluator.reported())
    return out


def greater_is_better(metric: str) -> bool:
    return all_metrics()[metric]


def check_metric(name: str) -> str:
    known = all_metrics()
    if name not in known:
        raise ValueError(f"unknown metric {name!r}; allowed: {', '.join(known)}")
    return name
