"""MLflow "model from code" for a trained generator (GAN) or denoiser (diffusion).

The logged model holds this file, the network's safetensors weights and its JSON spec;
loading it rebuilds the network from code and reads tensors — nothing is unpickled.

predict(model_input) with model_input a dict or one-row DataFrame:
  num_samples (int, default 16, or len(labels)), seed (int, default 0)
  labels      (class-conditional GANs and diffusion models: one class index, or one per sample;
               default every class in turn)
  steps, guidance, sampler, eta (diffusion models: default as trained; see params.yaml `diffusion`)
  images      (translators, pix2pix / cyclegan: the batch to translate, N×C×H×W floats in [-1, 1] shaped
               like the dataset's inputs — or uint8 0..255 — and nothing else is needed)
  reverse     (cyclegan: true translates domain B → A; default A → B)
returns float32 images N×C×H×W in [-1, 1], or points N×D for a points model (e.g. the 2D mixtures);
the weights are the EMA ones when the run kept them."""
from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel

_DIFFUSION_ONLY = {"steps": "sample_steps", "guidance": "guidance", "sampler": "sampler", "eta": "eta"}


def _first(value, default):
    if value is None:
        return default
    if hasattr(value, "iloc"):  # pandas Series / column
        value = value.iloc[0]
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) and not isinstance(value[0], (list, tuple, np.ndarray)):
        return value[0]
    return value


def _labels(value, n: int | None) -> torch.Tensor | None:
    if value is None:
        return None
    if hasattr(value, "iloc"):
        value = value.iloc[0] if len(value) == 1 else list(value)
    labels = torch.as_tensor(np.asarray(value, dtype=np.int64)).reshape(-1)
    if len(labels) == 1 and n is not None:
        labels = labels.expand(n).clone()
    return labels


class GeneratorModel(PythonModel):
    def load_context(self, context):
        from components.training.checkpoint import load_generator

        self.generator, self.spec = load_generator(Path(context.artifacts["generator"]))

    def predict(self, context, model_input, params=None):
        from components.sampling import draw_samples, requested_labels

        get = (lambda k: model_input[k] if k in model_input else None) if model_input is not None else (lambda k: None)
        if hasattr(self.generator, "translate"):
            return self._translate(get)
        if get("images") is not None:
            raise ValueError(f"images: only translators (pix2pix, cyclegan) take an image batch; this is a "
                             f"{self.spec['model']['family']} model")
        n_given = get("num_samples")
        labels = _labels(get("labels"), None if n_given is None else int(_first(n_given, 16)))
        n = int(_first(n_given, len(labels) if labels is not None else 16))
        seed = int(_first(get("seed"), 0))
        if n < 1:
            raise ValueError(f"num_samples must be ≥ 1, got {n}")
        diffusion = hasattr(self.generator, "sample")
        sampling = {ours: _first(get(key), None) for key, ours in _DIFFUSION_ONLY.items() if get(key) is not None}
        if sampling and not diffusion:
            raise ValueError(f"{', '.join(k for k in _DIFFUSION_ONLY if get(k) is not None)}: sampling options of "
                             f"diffusion models; this is a {self.spec['model']['family']} GAN")
        conditional = getattr(self.generator, "conditional", False)
        if labels is not None and not conditional:
            raise ValueError("labels given, but this model is unconditional")
        if labels is not None and len(labels) != n:
            raise ValueError(f"{len(labels)} labels for num_samples = {n}: give one label, or one per sample")
        if conditional and labels is None:
            labels = requested_labels(self.generator, n)
        if "sample_steps" in sampling:
            sampling["sample_steps"] = int(sampling["sample_steps"])
        out = draw_samples(self.generator, self.spec["model"]["latent_dim"], n, seed, labels=labels, sampling=sampling)
        return out.numpy().astype(np.float32)

    def _translate(self, get):
        from components.sampling import translate

        images = get("images")
        if images is None:
            raise ValueError(f"images: a {self.spec['model']['family']} translator needs the batch to translate "
                             f"(N×{'×'.join(map(str, self.spec['input_shape']))} floats in [-1, 1])")
        if hasattr(images, "iloc"):  # a DataFrame column holding the batch
            images = images.iloc[0] if len(images) == 1 else np.stack(list(images))
        x = np.asarray(images)
        reverse = bool(_first(get("reverse"), False))
        if reverse and self.spec["model"]["family"] != "cyclegan":
            raise ValueError(f"reverse: {self.spec['model']['family']} translates one way (input → target); "
                             "reverse is for cyclegan")
        expected = self.spec["image_shape"] if reverse else self.spec["input_shape"]
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or list(x.shape[1:]) != list(expected):
            raise ValueError(f"images must be N×{'×'.join(map(str, expected))} "
                             f"({'domain B' if reverse else 'the inputs'}), got shape {x.shape}")
        x = torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0) if x.dtype == np.uint8 else torch.from_numpy(x.astype(np.float32))
        return translate(self.generator, x, reverse=reverse).numpy().astype(np.float32)


mlflow.models.set_model(GeneratorModel())
