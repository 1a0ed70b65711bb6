"""`genpipe sample`: samples from any MLflow model URI (runs:/, models:/name@alias, models:/m-…) as a
PNG: an image grid, or a scatter plot for a 2D points model."""
from __future__ import annotations

from pathlib import Path

import mlflow
import torch

from components.atomic import atomic_write
from components.config import Params
from components.tracking import mlflow_store
from components.training.images import preview_png


def run(params: Params, repo_root: Path, model_uri: str, n: int, seed: int, out: Path) -> Path:
    if n < 1:
        raise ValueError(f"--n must be ≥ 1, got {n}")
    mlflow.set_tracking_uri(mlflow_store.resolve_uri(params.tracking.uri, Path(repo_root)))
    model = mlflow.pyfunc.load_model(model_uri)
    images = model.predict({"num_samples": n, "seed": seed})
    atomic_write(out, preview_png(torch.from_numpy(images)))
    print(f"sample: {n} images from {model_uri} (seed {seed}) → {out}")
    return out
