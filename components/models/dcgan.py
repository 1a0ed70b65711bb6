"""DCGAN (Radford et al. 2016) sized from the image shape: strided (transposed) 4×4 convs,
BatchNorm, ReLU in G / LeakyReLU in D, tanh output in [-1, 1].

Class-conditional (model.conditioning): G maps (z, one-hot label) (Mirza & Osindero 2014); D gets the
label either as K constant one-hot input channels (concat) or through a projection head, logit =
ψ(φ(x)) + ⟨embed(y), φ(x)⟩ (Miyato & Koyama 2018)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from components.models.own_labels import split_latent



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
    """own_labels (model.clusters): G is conditioned on num_classes clusters but draws its own by the buffer
    `label_prior` (components/models/own_labels.py); from outside it is unconditional."""

    def __init__(self, latent_dim: int, channels: int, image_shape: tuple[int, int, int], num_classes: int = 0,
                 squash: bool = True, own_labels: bool = False):  # squash=False: a VAE decoder's Bernoulli logits
        super().__init__()
        c, n, base = _geometry(image_shape)
        self.latent_dim, self.num_classes, self.own_labels = latent_dim, num_classes, own_labels
        if own_labels:
            self.register_buffer("label_prior", torch.full((num_classes,), 1.0 / num_classes))
        widths = [channels * 2 ** (n - 1 - i) for i in range(n)]  # e.g. [128, 64] for 28×28
        self.project = nn.Sequential(
            nn.Linear(latent_dim - own_labels + num_classes, widths[0] * base * base, bias=False),
            nn.Unflatten(1, (widths[0], base, base)),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], c, 4, 2, 1), *([nn.Tanh()] if squash else [])]
        self.body = nn.Sequential(*layers)

    @property
    def conditional(self) -> bool:
        """Whether a caller must give labels (a cluster-conditioned G draws its own)."""
        return self.num_classes > 0 and not self.own_labels

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.own_labels:  # training passes the real batch's clusters; sampling lets G draw them
            z, labels = split_latent(z, self.label_prior, labels)
        if self.num_classes:
            z = torch.cat([z, _one_hot(labels, self.num_classes, z)], 1)
        return self.body(self.project(z))


def _one_hot(labels: torch.Tensor | None, k: int, like: torch.Tensor) -> torch.Tensor:
    if labels is None:
        raise ValueError("this model is class-conditional: give labels")
    return F.one_hot(labels.long(), k).to(like.dtype)


class Discriminator(nn.Module):
    """Returns one logit per image (no sigmoid: the objective decides the link)."""

    def __init__(self, channels: int, image_shape: tuple[int, int, int], num_classes: int = 0,
                 conditioning: str = "none"):
        super().__init__()
        c, n, base = _geometry(image_shape)
        self.num_classes, self.conditioning = (num_classes, conditioning) if conditioning != "none" else (0, "none")
        widths = [channels * 2**i for i in range(n)]  # e.g. [64, 128]
        c_in = c + (num_classes if conditioning == "concat" else 0)
        layers: list[nn.Module] = [nn.Conv2d(c_in, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.Flatten(), nn.Linear(widths[-1] * base * base, 1)]
        self.body = nn.Sequential(*layers)  # the last layer is the head ψ; the rest computes φ(x)
        if self.conditioning == "projection":
            self.embed = nn.Embedding(num_classes, widths[-1] * base * base)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditioning == "concat":
            maps = _one_hot(labels, self.num_classes, x)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, maps], 1)
        features = self.body[:-1](x)
        out = self.body[-1](features).squeeze(1)
        if self.conditioning == "projection":
            out = out + (self.embed(_label_tensor(labels)) * features).sum(1)
        return out


def _label_tensor(labels: torch.Tensor | None) -> torch.Tensor:
    if labels is None:
        raise ValueError("this discriminator is class-conditional: give labels")
    return labels.long()


def init_weights(m: nn.Module) -> None:
    # DCGAN paper: N(0, 0.02) conv/linear weights, N(1, 0.02) BatchNorm scales.
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        # the projection embedding too: at torch's N(0, 1) its ⟨embed(y), φ(x)⟩ over thousands of
        # features starts D's logits in the tens and saturates the loss
        nn.init.normal_(m.weight, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def build(model_cfg, image_shape: tuple[int, int, int], d_shape: tuple[int, int, int],
          num_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    if len(image_shape) != 3:
        raise ValueError(f"dcgan needs images (C, H, W), got samples of shape {image_shape}; use family mlp for points")
    k = num_classes if model_cfg.conditional else model_cfg.clusters
    if model_cfg.conditional and k < 2:
        raise ValueError(f"model.conditioning = {model_cfg.conditioning!r} needs a labelled dataset of ≥ 2 classes, "
                         f"got {num_classes}")
    g = Generator(model_cfg.latent_dim, model_cfg.g_channels, image_shape, k, own_labels=bool(model_cfg.clusters))
    d = Discriminator(model_cfg.d_channels, d_shape, k, "projection" if model_cfg.clusters else model_cfg.conditioning)
    g.apply(init_weights)
    d.apply(init_weights)
    return g, d
