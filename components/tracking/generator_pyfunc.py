"""MLflow "model from code" for a trained generator.

The logged model holds this file, the generator's safetensors weights and its JSON spec;
loading it rebuilds the network from code and reads tensors — nothing is unpickled.

predict(model_input) with model_input a dict or one-row DataFrame:
  num_samples (int, default 16), seed (int, default 0)
returns float32 images N×C×H×W in [-1, 1], or points N×D for a points model (e.g. the 2D mixtures);
the weights are the EMA generator's when the run kept one."""
from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel


def _first(value, default):
    if value is None:
        return default
    if hasattr(value, "iloc"):  # pandas Series / column
        return value.iloc[0]
    if isinstance(value, (list, tuple, np.ndarray)):
        return value[0]
    return value


class GeneratorModel(PythonModel):
    def load_context(self, context):
        from components.training.checkpoint import load_generator

        self.generator, self.spec = load_generator(Path(context.artifacts["generator"]))

    def predict(self, context, model_input, params=None):
        get = (lambda k: model_input[k] if k in model_input else None) if model_input is not None else (lambda k: None)
        n = int(_first(get("num_samples"), 16))
        seed = int(_first(get("seed"), 0))
        if n < 1:
            raise ValueError(f"num_samples must be ≥ 1, got {n}")
        z = torch.randn(n, self.spec["model"]["latent_dim"], generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            return self.generator(z).numpy().astype(np.float32)


mlflow.models.set_model(GeneratorModel())
