"""Every metric genpipe reports, with its direction (True: larger is better). Torch-free: the config
validates `promote.metric` and `tune.metric` against it.

A data kind reports its base metrics (components/data/kinds.py), a family adds its own
(components/families/); this is the union, for names and directions."""
from __future__ import annotations

# Suffix of a metric's error bar: its standard deviation over the evaluation's sampling seeds
# (components/evaluation.measure). `kid_std` and `is_std` are the metrics' own spreads within one seed.
SEED_STD = "_seed_std"

# images, under a feature network (components/metrics/scores.py)
IMAGE_METRICS = {"fid": False, "kid_mean": False, "is_mean": True, "precision": True, "recall": True,
                 "density": True, "coverage": True, "class_kl": False}
# class-conditional models and translators: the evaluator agrees with the requested (or input's) label
CONDITIONAL_METRICS = {"cond_accuracy": True}
# 2D mixtures (components/metrics/modes.py)
POINT_METRICS = {"modes": True, "high_quality": True, "reverse_kl": False}
# token sequences (components/metrics/text.py): BLEU-n of samples against the test split, Self-BLEU-n among
# samples (higher: less diverse), the model's per-token NLL of the test split; an oracle dataset adds the
# oracle's per-token NLL of the samples (SeqGAN's NLL_oracle)
TEXT_METRICS = {**{f"bleu{n}": True for n in range(2, 6)}, **{f"self_bleu{n}": False for n in range(2, 6)},
                "nll_test": False}
ORACLE_METRICS = {"nll_oracle": False}


def all_metrics() -> dict[str, bool]:
    """name → greater is better, for every metric any data kind or family reports."""
    from components.families import FAMILIES

    out = {**IMAGE_METRICS, **CONDITIONAL_METRICS}
    for family in FAMILIES.values():
        out.update(family.own_metrics)
    return {**out, **POINT_METRICS, **TEXT_METRICS, **ORACLE_METRICS}


def greater_is_better(metric: str) -> bool:
    return all_metrics()[metric]


def check_metric(name: str) -> str:
    known = all_metrics()
    if name not in known:
        raise ValueError(f"unknown metric {name!r}; allowed: {', '.join(known)}")
    return name
