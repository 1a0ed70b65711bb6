"""Is the mode benchmark's committed report still what this code trains? Reruns a subset of its runs
(seed 0 of the preset and of every objective, with and without label smoothing, at D:G 1:1) into a
temporary folder and compares each run's samples bit for bit, and its modes, high quality and reverse
KL, with the committed run of the same configuration and seed. About 20 minutes for both mixtures on
2 CPU cores, against 2½ hours for the full `dvc repro benchmarks/dvc.yaml`.

    python benchmarks/modes_equivalence.py [--dataset ring8 --dataset grid25]

Exit status 1 if any run differs. Not part of the test suite. Equal samples on a subset are evidence,
not proof, that a change left the whole benchmark unchanged: rerun the full benchmark when a change
can alter training numerics."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def compare(dataset: str, out: Path, root: Path = REPO) -> tuple[int, list[str]]:
    """(runs in `out`, the ones that differ); `root`: what the new report's sample paths are relative to."""
    new = json.loads((out / f"{dataset}.json").read_text())["runs"]
    report = json.loads((REPO / "reports" / "modes" / f"{dataset}.json").read_text())
    committed = {(r["config"], r["seed"]): r for r in report["runs"]}
    diffs = []
    for run in new:
        old = committed[(run["config"], run["seed"])]
        same = np.array_equal(np.load(root / run["samples"]), np.load(REPO / old["samples"])) and all(
            run[k] == old[k] for k in ("modes", "high_quality", "reverse_kl", "status"))
        if not same:
            diffs.append(f"{run['config']} seed {run['seed']}")
    return len(new), diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", choices=["ring8", "grid25"])
    args = ap.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:  # inside the repo: run paths are relative to it
        out = Path(tmp) / "modes"
        for dataset in args.dataset or ["ring8", "grid25"]:
            subprocess.run([sys.executable, "-m", "pipelines.cli", "modes", "--dataset", dataset,
                            "--set", "modes.seeds=1", "--set", "modes.preset_seeds=1", "--set", "modes.d_steps=[1]",
                            "--set", f"modes.report_dir={out}"], cwd=REPO, check=True)
            n, diffs = compare(dataset, out)
            print(f"{dataset}: {n - len(diffs)}/{n} runs bit-identical to the committed report"
                  + (f"; differ: {', '.join(diffs)}" if diffs else ""), flush=True)
            failed |= bool(diffs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
