"""The 2D Gaussian mixtures of the mode-collapse literature (VEEGAN, Srivastava et al. 2017; PacGAN,
Lin et al. 2018), as sources of float32 points labelled by their mixture component:

    ring8   8 Gaussians at (cos 2πk/8, sin 2πk/8), k = 0..7, radius 1, σ = 0.01
            (k/8 of a full turn: linspace(0, 2π, 8) would put two modes on top of each other)
    grid25  25 Gaussians on {-4, -2, 0, 2, 4}², σ = 0.05

A fixed number of points per mode drawn with a fixed seed: the dataset is the same on every
machine, whatever `seed` is (which still drives the split and training)."""
from __future__ import annotations

import itertools

import numpy as np

from components.data.source_data import SOURCES, SourceData



def ring_centers(modes: int = 8, radius: float = 1.0) -> np.ndarray:
    angles = 2 * np.pi * np.arange(modes) / modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_centers(values=(-4.0, -2.0, 0.0, 2.0, 4.0)) -> np.ndarray:
    return np.array(list(itertools.product(values, values)), dtype=np.float64)


def mixture_data(centers: np.ndarray, sigma: float, total: int = 100_000, seed: int = 0) -> SourceData:
    k = len(centers)
    labels = np.repeat(np.arange(k), total // k)
    rng = np.random.default_rng(seed)
    points = centers[labels] + sigma * rng.standard_normal((len(labels), centers.shape[1]))
    return SourceData(points.astype(np.float32), labels.astype(np.int64), [f"mode{i}" for i in range(k)],
                      mixture={"centers": centers.tolist(), "sigma": sigma})


@SOURCES.register("ring8")
def ring8(cfg) -> SourceData:
    return mixture_data(ring_centers(), sigma=0.01)


@SOURCES.register("grid25")
def grid25(cfg) -> SourceData:
    return mixture_data(grid_centers(), sigma=0.05)
