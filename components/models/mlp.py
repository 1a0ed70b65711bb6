"""MLP generator and discriminator for low-dimensional points (the 2D mode-collapse benchmarks).

G: z → [Linear, ReLU] × hidden_layers → Linear to the point dimension (no output squashing: the
mixtures span ±4). D: [Linear, LeakyReLU(0.2)] × hidden_layers → one logit. Widths are
model.g_channels / model.d_channels."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from components.models.own_labels import split_latent



def _mlp(d_in: int, width: int, layers: int, d_out: int, activation) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(d_in if i == 0 else width, width), activation()]
    mods.append(nn.Linear(width, d_out))
    return nn.Sequential(*mods)


class Discriminator(nn.Module):
    """One logit per sample; with num_classes (model.clusters) a projection head adds ⟨embed(y), φ(x)⟩."""

    def __init__(self, body: nn.Module, num_classes: int = 0):
        super().__init__()
        self.body, self.num_classes = body, num_classes
        if num_classes:
            self.embed = nn.Embedding(num_classes, body[-1].in_features)

    def forward(self, x, labels=None):
        if not self.num_classes:
            return self.body(x.flatten(1)).squeeze(1)
        features = self.body[:-1](x.flatten(1))
        return self.body[-1](features).squeeze(1) + (self.embed(labels.long()) * features).sum(1)


class ClusterGenerator(nn.Module):
    """G(z', one-hot c) for model.clusters, drawing c itself from `label_prior` (components/models/own_labels.py)."""
    own_labels, conditional = True, False

    def __init__(self, latent_dim: int, width: int, layers: int, d_out: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("label_prior", torch.full((num_classes,), 1.0 / num_classes))
        self.body = _mlp(latent_dim - 1 + num_classes, width, layers, d_out, nn.ReLU)

    def forward(self, z, labels=None):
        z, labels = split_latent(z, self.label_prior, labels)
        return self.body(torch.cat([z, F.one_hot(labels.long(), self.num_classes).to(z.dtype)], 1))


def build(model_cfg, sample_shape: tuple[int, ...], d_shape: tuple[int, ...],
          num_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    if len(sample_shape) != 1:
        raise ValueError(f"mlp needs flat samples (points of shape (D,)), got {sample_shape}; use dcgan for images")
    n, k = model_cfg.hidden_layers, model_cfg.clusters
    if k:
        g = ClusterGenerator(model_cfg.latent_dim, model_cfg.g_channels, n, sample_shape[0], k)
    else:
        g = _mlp(model_cfg.latent_dim, model_cfg.g_channels, n, sample_shape[0], nn.ReLU)
    d = Discriminator(_mlp(math.prod(d_shape), model_cfg.d_channels, n, 1, lambda: nn.LeakyReLU(0.2)), k)
    return g, d
