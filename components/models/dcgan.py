"""DCGAN (Radford et al. 2016) sized from the image shape: strided (transposed) 4×4 convs,
BatchNorm, ReLU in G / LeakyReLU in D, tanh output in [-1, 1]."""
from __future__ import annotations

import torch
from torch import nn

from components.models import MODELS


def stages_for(size: int) -> tuple[int, int]:
    """Halve while even and ≥ 8 (28→14→7, 32→16→8→4, 8→4): (number of 2× stages, base size)."""
    n = 0
    while size % 2 == 0 and size // 2 >= 4 and n < 5:
        size //= 2
        n += 1
    return n, size


def _geometry(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    c, h, w = image_shape
    n, base_h = stages_for(h)
    n_w, base_w = stages_for(w)
    if n == 0 or (n, base_h) != (n_w, base_w):
        raise ValueError(
            f"dcgan needs a square image whose side halves at least once to ≥ 4 (e.g. 8, 28, 32, 64); got {h}×{w}"
        )
    return c, n, base_h


class Generator(nn.Module):
    def __init__(self, latent_dim: int, channels: int, image_shape: tuple[int, int, int]):
        super().__init__()
        c, n, base = _geometry(image_shape)
        self.latent_dim = latent_dim
        widths = [channels * 2 ** (n - 1 - i) for i in range(n)]  # e.g. [128, 64] for 28×28
        self.project = nn.Sequential(
            nn.Linear(latent_dim, widths[0] * base * base, bias=False),
            nn.Unflatten(1, (widths[0], base, base)),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], c, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z))


class Discriminator(nn.Module):
    """Returns one logit per image (no sigmoid: the objective decides the link)."""

    def __init__(self, channels: int, image_shape: tuple[int, int, int]):
        super().__init__()
        c, n, base = _geometry(image_shape)
        widths = [channels * 2**i for i in range(n)]  # e.g. [64, 128]
        layers: list[nn.Module] = [nn.Conv2d(c, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.Flatten(), nn.Linear(widths[-1] * base * base, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).squeeze(1)


def init_weights(m: nn.Module) -> None:
    # DCGAN paper: N(0, 0.02) conv/linear weights, N(1, 0.02) BatchNorm scales.
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


@MODELS.register("dcgan")
def build(model_cfg, image_shape: tuple[int, int, int], d_shape: tuple[int, int, int]) -> tuple[nn.Module, nn.Module]:
    if len(image_shape) != 3:
        raise ValueError(f"dcgan needs images (C, H, W), got samples of shape {image_shape}; use family mlp for points")
    g = Generator(model_cfg.latent_dim, model_cfg.g_channels, image_shape)
    d = Discriminator(model_cfg.d_channels, d_shape)
    g.apply(init_weights)
    d.apply(init_weights)
    return g, d
