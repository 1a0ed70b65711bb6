"""Mode counting for the 2D mixtures (the VEEGAN / PacGAN protocol).

On N generated samples (2,500 in the papers):
- a sample is high quality when it lies within `hq_sigmas`·σ (3σ) of its nearest mixture mean;
- a mode is captured when at least one high-quality sample has it as nearest mean;
- reverse KL is KL(p ‖ uniform) = Σ p log(p K), with p the histogram of nearest modes over the
  high-quality samples (the generated mode distribution). With no high-quality sample at all it is
  log K, the value of total collapse onto one mode (the worst a histogram can score)."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np

from components.metrics.uniform_kl import kl_to_uniform

PAPER_SAMPLES = 2500


def mode_scores(samples: np.ndarray, centers: np.ndarray, sigma: float, hq_sigmas: float = 3.0) -> dict:
    x = np.asarray(samples, dtype=np.float64)
    c = np.asarray(centers, dtype=np.float64)
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(f"samples {x.shape} and centers {c.shape} must both be (N, D) with the same D")
    if len(x) == 0:
        raise ValueError("mode_scores needs at least one sample")
    k = len(c)
    dist = np.sqrt(((x[:, None, :] - c[None, :, :]) ** 2).sum(-1))  # (N, K)
    nearest = dist.argmin(1)
    hq = dist[np.arange(len(x)), nearest] <= hq_sigmas * sigma
    counts = np.bincount(nearest[hq], minlength=k)
    reverse_kl = kl_to_uniform(counts) if hq.any() else math.log(k)
    return {
        "modes": int((counts > 0).sum()),
        "num_modes": k,
        "high_quality": float(hq.mean()),
        "reverse_kl": reverse_kl,
        "num_samples": len(x),
    }


def mode_counter_info(mixture: dict, hq_sigmas: float = 3.0) -> dict:
    """The 'evaluator' of a points dataset: the mixture and the protocol, hashed like a feature network
    so the hash can travel with every mode metric."""
    spec = {"kind": "modes", "centers": mixture["centers"], "sigma": mixture["sigma"], "hq_sigmas": hq_sigmas}
    return {**spec, "hash": hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()}
