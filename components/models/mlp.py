"""MLP generator and discriminator for low-dimensional points (the 2D mode-collapse benchmarks).

G: z → [Linear, ReLU] × hidden_layers → Linear to the point dimension (no output squashing: the
mixtures span ±4). D: [Linear, LeakyReLU(0.2)] × hidden_layers → one logit. Widths are
model.g_channels / model.d_channels."""
from __future__ import annotations

import math

from torch import nn



def _mlp(d_in: int, width: int, layers: int, d_out: int, activation) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(d_in if i == 0 else width, width), activation()]
    mods.append(nn.Linear(width, d_out))
    return nn.Sequential(*mods)


class Discriminator(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body(x.flatten(1)).squeeze(1)


def build(model_cfg, sample_shape: tuple[int, ...], d_shape: tuple[int, ...],
          num_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    if len(sample_shape) != 1:
        raise ValueError(f"mlp needs flat samples (points of shape (D,)), got {sample_shape}; use dcgan for images")
    n = model_cfg.hidden_layers
    g = _mlp(model_cfg.latent_dim, model_cfg.g_channels, n, sample_shape[0], nn.ReLU)
    d = Discriminator(_mlp(math.prod(d_shape), model_cfg.d_channels, n, 1, lambda: nn.LeakyReLU(0.2)))
    return g, d
