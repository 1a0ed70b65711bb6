"""The default evaluator's held-out accuracy and training time on mnist5k (target ≥ 98%), over seeds.
Not part of the test suite (≈ 45 s a seed on 2 cores).

    python benchmarks/evaluator_accuracy.py [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.config import load_params  # noqa: E402
from components.data.shards import load_split  # noqa: E402
from components.metrics.feature_nets import train_classifier  # noqa: E402
from pipelines import prepare  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        params = load_params(REPO / "params.yaml", [f"data.prepared_dir={tmp}"])
        prepared = prepare.run(params, tmp)
        (xtr, ytr), (xte, yte) = load_split(prepared, "train"), load_split(prepared, "test")
        cfg = params.evaluator
        rows = []
        for seed in args.seeds:
            _, report = train_classifier(xtr, ytr, xte, yte, seed=seed, epochs=cfg.epochs, batch_size=cfg.batch_size,
                                         lr=cfg.lr, num_threads=2)
            rows.append({"seed": seed, "test_accuracy": report["test_accuracy"], "train_seconds": report["train_seconds"]})
            print(json.dumps(rows[-1]), flush=True)
    accs = [r["test_accuracy"] for r in rows]
    print(f"mean test accuracy {sum(accs) / len(accs):.4f} (min {min(accs):.4f}) over seeds {args.seeds}; target ≥ 0.98")


if __name__ == "__main__":
    main()
