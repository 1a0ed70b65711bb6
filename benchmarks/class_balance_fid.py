"""How much FID a wrong class balance alone costs: real training digits, drawn with a generator's class
histogram, scored like a generator against the test split (same evaluator, same sample count).

    python benchmarks/class_balance_fid.py [--metrics reports/metrics.json] [--out reports/study/class_balance.json]

A perfect generator of every digit that only gets the class proportions wrong would score this FID: the
part of a model's FID that better digits cannot remove. Prints and writes, over 5 draws (seeds 0–4): the
FID of real digits drawn uniformly over classes, drawn with the histogram in `--metrics`
(`class_histogram`, written by `evaluate`), and drawn with mixtures of the two."""
from __future__ import annotations

import argparse
import json
import statistics

from study_sweep import REPO, real_features


def main() -> None:
    import numpy as np

    from components.atomic import atomic_write
    from components.config import load_params
    from components.metrics import scores
    from components.metrics.uniform_kl import kl_to_uniform

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--metrics", default="reports/metrics.json", help="an evaluate report with class_histogram")
    ap.add_argument("--out", default="reports/study/class_balance.json")
    args = ap.parse_args()
    params = load_params(REPO / args.params)
    report = json.loads((REPO / args.metrics).read_text())
    if "class_histogram" not in report:
        raise SystemExit(f"{args.metrics} has no class_histogram (an image evaluation under a classifier evaluator)")
    test_features, train_features, train_y, info = real_features(params)
    n = params.evaluate.num_samples
    hist = np.asarray(report["class_histogram"], dtype=float)
    classes = [np.flatnonzero(train_y == k) for k in range(len(hist))]

    def fid_of(proportions: np.ndarray, seed: int) -> float:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, proportions / proportions.sum())
        idx = np.concatenate([rng.choice(c, m, replace=True) for c, m in zip(classes, counts)])
        return scores.fid_kid(test_features, train_features[idx], kid_subset_size=params.evaluate.kid_subset_size,
                              seed=seed)["fid"]

    out = {"evaluator_hash": info["hash"], "metrics": args.metrics, "samples": n, "class_histogram": hist.tolist(),
           "model_fid": report.get("fid"), "class_kl": kl_to_uniform(hist)}
    uniform = np.full_like(hist, 1 / len(hist))
    for name, p in (("uniform", uniform), ("histogram", hist / hist.sum())):
        values = [fid_of(p, seed) for seed in range(5)]
        out[f"fid_real_{name}"] = statistics.mean(values)
        out[f"fid_real_{name}_seed_std"] = statistics.stdev(values)
    # between the two: how far the balance must come back for a given FID (class KL as evaluate computes it)
    out["mixtures"] = []
    for a in (0.25, 0.5, 0.75):
        p = (1 - a) * uniform + a * hist / hist.sum()
        out["mixtures"].append({"histogram_weight": a, "class_kl": kl_to_uniform(p),
                                "fid_real": statistics.mean(fid_of(p, seed) for seed in range(5))})
    atomic_write(REPO / args.out, json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
