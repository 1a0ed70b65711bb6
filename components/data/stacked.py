"""Stacked MNIST, the 1,000-mode image benchmark of VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al.
2018): each image stacks three independently drawn mnist5k digits as its three channels, and its class is
the digit triple, 100·d₁ + 10·d₂ + d₃. Like the 2D mixtures, the dataset is fixed (its own seed and size),
the same on every machine whatever `seed` is. Its mode counter is components/metrics/stacked.py."""
from __future__ import annotations

import numpy as np

from components.data.source_data import SOURCES, SourceData

STACKED_IMAGES = 25_600  # training + test images; PacGAN trains on 128,000, a size this CPU project scales down
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
    images, labels = stack_digits(base.samples, base.labels, STACKED_IMAGES, STACKED_SEED)
    return SourceData(images, labels, [f"{k:03d}" for k in range(1000)])
