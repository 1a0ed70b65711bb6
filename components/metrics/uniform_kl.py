"""KL divergence of a histogram from uniform: the class-balance score of evaluate, and the reverse KL of
the mode benchmarks (2D mixtures, Stacked MNIST). Numpy only, so the mode benchmark needs no torch here."""
from __future__ import annotations

import numpy as np


def kl_to_uniform(hist) -> float:
    """KL(p ‖ uniform) = Σ p log(p·K) over the K bins, 0 log 0 = 0: 0 when balanced, log K for one bin."""
    counts = np.asarray(hist, dtype=np.float64)
    p = counts / counts.sum()
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] * len(p))))
