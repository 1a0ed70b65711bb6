"""Does a refactor change any number? Runs short prepare → evaluator → train (--no-ray) → evaluate chains at
two commits, each in its own `git worktree`, on this machine, and compares the trained generator's weights
and every metric bit for bit (timings and run ids excepted). The chains cover each evaluator a default
install ships: the default preset under the pinned classifier, the 2D mixture under the mode counter,
Stacked MNIST under the per-channel reader (with its mode samples) and the SeqGAN oracle under the text
scorer. About 6 minutes per commit on 2 CPU cores.

    python benchmarks/commit_equivalence.py --base 6d3a9ac [--head HEAD] [--chain ring8 …]

Exit status 1 if weights or a metric both commits report differ; metrics only one side reports are listed. Not part of the test suite. Numbers are compared between commits on the
same machine only: another CPU gives other floats (docs/metrics.md)."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVAL = ["evaluate.error_seeds=2", "evaluate.num_samples=1000"]
CHAINS = {
    "default": ["train.max_steps=200", *EVAL],
    "ring8": ["preset=ring8", "train.max_steps=300", *EVAL],
    "stacked": ["preset=null", "data.source=stacked_mnist", "evaluator.kind=per_channel", "train.max_steps=100",
                "evaluate.mode_samples=1500", *EVAL],
    "seqgan_oracle": ["preset=seqgan_oracle", "data.num_sequences=2000", "seqgan.pretrain_steps=100",
                      "seqgan.d_pretrain_steps=10", "seqgan.adversarial_steps=5", *EVAL],
}
STAGES = (["prepare"], ["evaluator"], ["train", "--no-ray"], ["evaluate"])
UNCOMPARED = ("model_uri", "mlflow_run_id")


def run_chain(tree: Path, out: Path, overrides: list[str]) -> dict:
    """The chain's outputs under `out`: (weights sha256, metrics without timings)."""
    sets = [*overrides, f"data.prepared_dir={out}/prepared", f"evaluator.output_dir={out}/evaluator",
            f"train.output_dir={out}/train", f"scaling.storage_path={out}/checkpoints",
            f"tracking.uri=sqlite:///{out}/mlflow.db", f"evaluate.report={out}/metrics.json",
            f"evaluate.headline={out}/headline.json", f"evaluate.grid={out}/samples.png"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for stage in STAGES:
        cmd = [sys.executable, "-m", "pipelines.cli", *stage, *(a for kv in sets for a in ("--set", kv))]
        subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"weights": hashlib.sha256((out / "train" / "generator.safetensors").read_bytes()).hexdigest(),
            "metrics": {k: v for k, v in metrics.items() if "seconds" not in k and k not in UNCOMPARED}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the commit before the change")
    ap.add_argument("--head", default="HEAD", help="the commit after it (committed: uncommitted edits are not seen)")
    ap.add_argument("--chain", action="append", choices=list(CHAINS), help="default: every chain")
    args = ap.parse_args()
    differ = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for side in ("base", "head"):
            trees[side] = Path(tmp) / side
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(trees[side]), getattr(args, side)],
                           cwd=REPO, check=True)
        try:
            for chain in args.chain or list(CHAINS):
                got = {side: run_chain(tree, Path(tmp) / f"{side}-{chain}", CHAINS[chain]) for side, tree in trees.items()}
                base, head = got["base"]["metrics"], got["head"]["metrics"]
                shared = sorted(set(base) & set(head))
                diff = [k for k in shared if base[k] != head[k]]
                same_weights = got["base"]["weights"] == got["head"]["weights"]
                print(f"{chain}: weights {'identical' if same_weights else 'DIFFER'} ({got['head']['weights'][:12]}); "
                      f"{len(shared) - len(diff)}/{len(shared)} shared metrics bit-identical"
                      + (f"; differ: {', '.join(diff)}" if diff else "")
                      + "".join(f"; only at {side}: {', '.join(sorted(set(mine) - set(other)))}"
                                for side, mine, other in (("base", base, head), ("head", head, base))
                                if set(mine) - set(other)), flush=True)
                if diff or not same_weights:
                    differ.append(chain)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=False)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
