"""The Stacked MNIST mode counter (VEEGAN, PacGAN): a digit classifier reads each of a sample's three
channels, the digit triple is its mode (one of 1,000), and on N generated samples (26,000 in PacGAN)
- `modes` counts the triples that occur at least once;
- `reverse_kl` is KL(p ‖ uniform) = Σ p log(1000 p) of the triples' histogram p: 0 when every triple is
  equally frequent, log 1000 ≈ 6.91 when all samples are one triple.
The data is components/data/stacked.py."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

PAPER_SAMPLES = 26_000
NUM_MODES = 1000


def triples(channel_digits: np.ndarray) -> np.ndarray:
    """(N, 3) digits per channel → mode index 100·d₁ + 10·d₂ + d₃."""
    d = np.asarray(channel_digits, dtype=np.int64)
    if d.ndim != 2 or d.shape[1] != 3 or d.min() < 0 or d.max() > 9:
        raise ValueError(f"expected (N, 3) digits in 0..9, got shape {d.shape}")
    return 100 * d[:, 0] + 10 * d[:, 1] + d[:, 2]


def stacked_mode_scores(channel_digits: np.ndarray) -> dict:
    modes = triples(channel_digits)
    if len(modes) == 0:
        raise ValueError("stacked_mode_scores needs at least one sample")
    p = np.bincount(modes, minlength=NUM_MODES) / len(modes)
    nz = p > 0
    return {"modes": int(nz.sum()), "num_modes": NUM_MODES, "reverse_kl": float((p[nz] * np.log(p[nz] * NUM_MODES)).sum()),
            "max_reverse_kl": math.log(NUM_MODES)}


def read_channels(classify: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    """The digit on each channel of (N, 3, H, W) images, by `classify` ((M, 1, H, W) → (M,) digits):
    the three channels are classified as one batch of 3N single-channel images."""
    n, c, h, w = images.shape
    if c != 3:
        raise ValueError(f"Stacked MNIST samples have 3 channels, got {c}")
    return np.asarray(classify(images.reshape(n * 3, 1, h, w))).reshape(n, 3)
