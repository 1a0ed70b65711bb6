"""`genpipe sample`: samples from any MLflow model URI (runs:/, models:/name@alias, models:/m-…) as a
PNG: an image grid, or a scatter plot for a 2D points model. A model whose family translates (pix2pix,
CycleGAN) translates the first n test inputs of the dataset it was trained on (data.prepared_dir/<dataset>):
input | output pairs."""
from __future__ import annotations

from pathlib import Path

import mlflow
import torch

from components.atomic import atomic_write
from components.config import Params
from components.families import FAMILIES
from components.tracking import mlflow_store
from components.training.images import preview_png


def run(params: Params, repo_root: Path, model_uri: str, n: int, seed: int, out: Path) -> Path:
    if n < 1:
        raise ValueError(f"--n must be ≥ 1, got {n}")
    mlflow.set_tracking_uri(mlflow_store.resolve_uri(params.tracking.uri, Path(repo_root)))
    model = mlflow.pyfunc.load_model(model_uri)
    spec = model.unwrap_python_model().spec
    if "images" in FAMILIES.get(spec["model"]["family"]).pyfunc_inputs:  # it translates: real inputs
        from components.data.shards import load_rank_inputs
        from components.training.images import side_by_side
        from components.training.loop import to_model_space

        inputs = load_rank_inputs((Path(repo_root) / params.data.prepared_dir / spec["dataset"]).resolve(), "test")[0][:n]
        outputs = torch.from_numpy(model.predict({"images": inputs}))
        png = preview_png(side_by_side(to_model_space(torch.from_numpy(inputs)), outputs), cols=2)
    else:
        png = preview_png(torch.from_numpy(model.predict({"num_samples": n, "seed": seed})))
    atomic_write(out, png)
    print(f"sample: {n} images from {model_uri} (seed {seed}) → {out}")
    return out
