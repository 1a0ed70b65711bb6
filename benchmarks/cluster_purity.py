"""How well label-free clusters separate Stacked MNIST's modes (docs/gan-game.md, "cluster conditioning"): the
k-means of `model.clusters` (components/training/clusters.py: PCA then k-means) on a seeded subsample of the
training images, scored by purity against the digit triples the clusterer never sees. Triple purity: the share
of images whose cluster's most common triple is their own; channel purity: the same for one channel's digit.

Features: the images' values (PCA to each of --dims components), and with --discriminator RUN_DIR the
penultimate features of that benchmark run's trained D (its newest checkpoint; PCA to 32), which is what a
self-conditioned GAN (Liu et al. 2020) would re-cluster on. A subsample and fewer clusters than the benchmark's
128,000 images and 1,000 clusters keep each fit to seconds on 2 CPU cores.
    python benchmarks/cluster_purity.py --dims 8 16 32 64 128 256
    python benchmarks/cluster_purity.py --dims 32 --discriminator data/stacked/dcgan_dd-s1"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from components.data.shards import read_share  # noqa: E402
from components.training.clusters import Clusters  # noqa: E402
from components.training.loop import to_model_space  # noqa: E402

PREPARED = ROOT / "data" / "stacked" / "prepared" / "stacked_mnist"


def purity(assigned: np.ndarray, labels: np.ndarray) -> float:
    """The share of samples whose cluster's most common label is their own."""
    return sum(np.bincount(labels[assigned == c]).max() for c in np.unique(assigned)) / len(labels)


def scores(features: torch.Tensor, triples: np.ndarray, k: int, dims: int) -> dict:
    assigned = Clusters(features, k, 0, dims).assign(features).numpy()
    return {"triple": purity(assigned, triples),
            "channels": [purity(assigned, triples // place % 10) for place in (100, 10, 1)]}


def discriminator_features(run_dir: Path, images: torch.Tensor) -> torch.Tensor:
    """The trained D's features before its head, for clean images (a noised D gets noise level 0)."""
    from components.models.dcgan import Discriminator

    found = sorted(run_dir.glob("checkpoints/*/checkpoint_*/state.pt"))
    if not found:
        raise SystemExit(f"--discriminator {run_dir}: no checkpoints/*/checkpoint_*/state.pt there (a benchmark "
                         "run's data folder, e.g. data/stacked/dcgan-s0, after it trained)")
    newest = found[-1]
    state = torch.load(newest, weights_only=True, map_location="cpu")["discriminator"]
    c_in, width = state["body.0.weight"].shape[1], state["body.0.weight"].shape[0]
    d = Discriminator(width, (c_in, *images.shape[2:])).eval()
    d.load_state_dict(state)
    x = torch.cat([images, images.new_zeros(len(images), c_in - images.shape[1], *images.shape[2:])], 1)
    with torch.no_grad():
        return torch.cat([d.body[:-1](x[i:i + 2000]) for i in range(0, len(x), 2000)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=32_000)
    ap.add_argument("--clusters", type=int, default=250)
    ap.add_argument("--dims", type=int, nargs="+", default=[32])
    ap.add_argument("--discriminator", type=Path, help="a benchmark run's data folder, e.g. data/stacked/dcgan-s0")
    args = ap.parse_args()
    torch.set_num_threads(2)
    x, triples = read_share(PREPARED, "train")[:2]
    pick = np.sort(np.random.default_rng(0).choice(len(x), args.samples, replace=False))
    images, triples = to_model_space(torch.from_numpy(x[pick])), triples[pick]
    rows = [(f"pixels, PCA {dims}", images, dims) for dims in args.dims]
    if args.discriminator:
        rows.append((f"D features ({args.discriminator.name}), PCA 32", discriminator_features(args.discriminator, images), 32))
    print(f"{args.samples} training images, {args.clusters} clusters")
    for name, features, dims in rows:
        s = scores(features, triples, args.clusters, dims)
        print(f"{name}: triple purity {s['triple']:.3f}, channel purity "
              + " / ".join(f"{p:.3f}" for p in s["channels"]), flush=True)


if __name__ == "__main__":
    main()
